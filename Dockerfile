# syntax=docker/dockerfile:1
# lemi's image: the GitHub App on port 8080, intake and its worker process in one container
# (`lemi serve --with-worker`, as `make run`). docs/operations.md says how to run it.
#
#   docker build -t lemi .
#   docker run -p 8080:8080 -v lemi-data:/var/lib/lemi --env-file app.env lemi
#
# Both stages use one base image, pinned by the digest of its multi-platform index (python:3.12-slim),
# so a rebuild gets the same bytes. The digest was recorded without registry access, from public
# Dockerfiles pinning python:3.12-slim: check it once with the first command below. To move to a
# newer base (a security fix), read the tag's current digest and replace it in both FROM lines:
#   docker buildx imagetools inspect python:3.12-slim     # the first "Digest:" line
#   or: docker pull python:3.12-slim && docker images --digests python

# -- build: lemi's wheel, and a virtual environment of exactly the locked run-time packages --
FROM python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# everything requirements.lock pins (run time, tests, the build backend), each file checked against its hash
COPY requirements.lock ./
RUN python -m venv /opt/build && /opt/build/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md app.yml ./
COPY tools/__init__.py tools/runtime_lock.py tools/
COPY templates/ templates/
COPY handlers/ handlers/
COPY bot/ bot/
# the wheel, built by the pinned hatchling; then only the lock's run-time entries (no test or
# build package), with their hashes and no resolution, and lemi's wheel on top
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
 && /opt/build/bin/python -m tools.runtime_lock requirements.lock pyproject.toml > /dist/runtime.lock \
 && python -m venv /opt/lemi \
 && /opt/lemi/bin/pip install --require-hashes --no-deps -r /dist/runtime.lock \
 && /opt/lemi/bin/pip install --no-deps /dist/lemi-*.whl \
 && /opt/lemi/bin/pip uninstall --yes pip

# -- runtime: the interpreter, the virtual environment, an unprivileged user --
FROM python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea AS runtime
ENV PATH=/opt/lemi/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST=0.0.0.0 PORT=8080
RUN groupadd --system --gid 10001 lemi \
 && useradd --system --uid 10001 --gid lemi --home-dir /var/lib/lemi --shell /usr/sbin/nologin lemi \
 && install -d -o lemi -g lemi -m 0750 /var/lib/lemi
COPY --from=build /opt/lemi /opt/lemi
# the working directory holds what lemi keeps: the SQLite queue (lemi-queue.db and
# lemi-queue.db.bodies/), lemi-locks.db and, unless LEMI_CONFIG says otherwise, lemi.yml
WORKDIR /var/lib/lemi
VOLUME /var/lib/lemi
USER 10001:10001
EXPOSE 8080
# liveness: /healthz answers 200 while the process serves (docs/operations.md, "Health")
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=4)"]
# SIGTERM stops intake and the worker, which lets its running jobs finish within its bound
STOPSIGNAL SIGTERM
CMD ["lemi", "serve", "--with-worker"]
