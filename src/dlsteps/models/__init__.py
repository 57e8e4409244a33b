"""Built-in models: small starting points (< 1M parameters, no batchnorm, no dropout)."""
