// Runs the sketch on the host (the drivers' host branches record what they would send):
// feeds stdin to Serial (in chunks, interleaved with
// loop() calls at 1 ms per call), writes the sketch's serial output to stdout and the
// final LED state to stderr. Usage: host_eyes <milliseconds to run>
#include <cstdio>
#include <iostream>
#include <iterator>

#include "Arduino.h"
unsigned long g_millis = 0;
HostSerial Serial;

#include "../droid_eyes/droid_eyes.ino"

int main(int argc, char **argv) {
  unsigned long run_ms = argc > 1 ? strtoul(argv[1], nullptr, 10) : 1000;
  std::vector<uint8_t> input((std::istreambuf_iterator<char>(std::cin)),
                             std::istreambuf_iterator<char>());
  setup();
  size_t pos = 0;
  for (unsigned long t = 0; t < run_ms; t++) {
    // ~11.5 bytes per ms arrive at 115200 baud
    for (int k = 0; k < 11 && pos < input.size(); k++) Serial.in.push_back(input[pos++]);
    loop();
    g_millis++;
  }
  fwrite(Serial.out.data(), 1, Serial.out.size(), stdout);
  fprintf(stderr, "STATE %u %u %u %u %u %u %u\n", state.pattern, state.r, state.g, state.b,
          state.brightness, state.speedCentiHz, amplitude);
#if EYES_USE_MATRIX
  // what the MAX7219 driver (host branch of max7219.h) wrote into each device
  for (int e = 0; e < MATRIX_COUNT; e++) {
    fprintf(stderr, "ROWS %d %d", e, matrix.regs[e][MAX7219_INTENSITY]);
    for (int r = 0; r < 8; r++) fprintf(stderr, " %u", matrix.regs[e][MAX7219_DIGIT0 + r]);
    fprintf(stderr, "\n");
  }
#endif
#if EYES_USE_NEOPIXEL
  fprintf(stderr, "RING %lu %u\n", ring.shows, (unsigned)ring.pixel(0));
#endif
  return 0;
}
