"""Object detection: boxes + scores from an anchor-free head; NMS and tracking in the runtime."""
