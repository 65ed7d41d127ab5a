"""Input contract: workspace layout, spec, CSV tables, image paths, validation."""
