"""lemi: a paved road from a pull request to ECS Fargate."""
