"""lemi on AWS: clients per environment, verify, deploy, operate."""
