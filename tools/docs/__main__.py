"""`python -m tools.docs`: regenerate the generated pages of docs/ (`make docs`)."""

import sys

from tools.docs import main

sys.exit(main())
