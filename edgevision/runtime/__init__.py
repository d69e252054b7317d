"""The torch-free in-vehicle runtime: sources, pipeline, postprocess, sinks."""
