terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }

  # Partial configuration: bucket, key, region (and, for the local cloud, the endpoint) come
  # from environments/<env>.yml through -backend-config. use_lockfile needs no DynamoDB table.
  backend "s3" {}
}

provider "aws" {
  # Region and endpoints come from the environment (AWS_REGION, AWS_ENDPOINT_URL), so the same
  # module runs against real AWS and against the local cloud. The skip_* switches exist only for
  # emulators; their defaults are the safe ones for real AWS.
  region                      = var.region
  skip_credentials_validation = var.skip_credentials_validation
  skip_requesting_account_id  = var.skip_requesting_account_id
  skip_metadata_api_check     = var.skip_metadata_api_check
  skip_region_validation      = var.skip_region_validation
}
