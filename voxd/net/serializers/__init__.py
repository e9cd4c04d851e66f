"""Websocket media protocols as serializers over the one websocket leg (voxd.net.ws_leg)."""
