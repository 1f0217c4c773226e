"""Energy samplers: ``nvml`` (real GPU), ``none`` (no measurement). One module per sampler;
each imports its heavy library inside the module, on the worker."""
