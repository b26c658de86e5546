"""HLS output core (sans-IO): segmenter.HlsSegmenter and playlist rendering; see docs/hls.md."""
