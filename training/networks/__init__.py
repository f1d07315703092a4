"""The torch versions of the neural receiver's networks (training and ONNX export only).

The installed package runs their ONNX exports through ONNX Runtime
(``codec.receiver.neural``) and never imports torch; the names, shapes and constants both
sides share are ``codec.receiver.neural.contract``.

- ``interpolator.Interpolator``: role ``interpolator``;
- ``encoders.IdentityEncoder`` and ``encoders.AudioEncoder``;
- ``animator.Animator``: role ``animator`` (its ``heads``), with ``compose`` the twin of the
  runtime's ``codec.receiver.neural.compose.compose_frame``;
- ``network.ReceiverNet``: identity encoder + animator, trained together;
- ``mouth_driver.MouthDriver``: role ``mouth``.
"""
