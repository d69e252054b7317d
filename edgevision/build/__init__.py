"""Build: export → calibrate → quantize → verify → bundle, each a small callable."""
