"""minyi (民意): the WeChat official-account side of grid-based social governance."""
