"""Box ops with torchvision.ops semantics: jit/vmap-able, static shapes, xyxy unless named."""

# --- boxes & nms (ops A) ---

# --- roi_align, anchors, coders, matching (ops B) ---
