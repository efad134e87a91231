"""skybell-bridge: SkyBell doorbell live view to RTSP, HLS, MJPEG and WebRTC; clips; automations."""
