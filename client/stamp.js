// Reads the timestamp strip under each reconstructed frame (server/view_tracks.py):
// 32 cells of 8 pixels, black = 0, white = 1, most significant bit first, at rows 256-271.
"use strict";
const STAMP = { canvasSize: 256, stripH: 16, bits: 32 };

function readStamp(ctx) {
  const cell = STAMP.canvasSize / STAMP.bits;
  const row = ctx.getImageData(0, STAMP.canvasSize + STAMP.stripH / 2, STAMP.canvasSize, 1).data;
  let value = 0;
  for (let i = 0; i < STAMP.bits; i++) {
    const x = i * cell + cell / 2;
    const grey = (row[4 * x] + row[4 * x + 1] + row[4 * x + 2]) / 3;
    value = value * 2 + (grey > 127 ? 1 : 0);
  }
  return value;
}
