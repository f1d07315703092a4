"""The talkcodec call: signalling rooms, WebRTC transport, the receiver worker, senders.

Topology (see docs/CALL.md)::

    camera/file -> sender (Python, next to the camera) --talkcodec link--> receiver worker
                                                                           |  WebRTC video
                                                                           v  + audio
                                                                       viewer page

Only the talkcodec stream (8x8 packets, identity frame, low-bitrate Opus) crosses the
sender -> receiver link; that link's bitrate is what the call measures.
"""
