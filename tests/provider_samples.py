"""Provider answers as the providers' API documents show them, shared by the unit tests."""

# NanoBanana Video's documented success response for POST /api/v1/image-to-video.php.
NB_SUCCESS = {
    "success": True,
    "video_id": "vid_f7g8h9i0j1k2",
    "video_url": "https://cdn.nanobananavideo.com/videos/vid_f7g8h9.mp4",
    "thumbnail_url": "https://cdn.nanobananavideo.com/thumbs/vid_f7g8h9.jpg",
    "credits_used": 6,
    "rate_limit": {"count": 2, "limit": 30, "remaining": 28},
}
