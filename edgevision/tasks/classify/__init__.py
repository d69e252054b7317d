"""Image classification: one label per image (top-k of the logits)."""
