"""Training (torch): backbones, heads, freeze policies, loop, reports."""
