// LedControl stand-in: records what the sketch shows on the two MAX7219 matrices.
#pragma once
#include "Arduino.h"
class LedControl {
 public:
  uint8_t rows[8][8] = {};
  int intensity[8] = {};
  bool off[8] = {};
  LedControl(int, int, int, int) {}
  void shutdown(int d, bool s) { off[d] = s; }
  void setIntensity(int d, int v) { intensity[d] = v; }
  void clearDisplay(int d) { memset(rows[d], 0, 8); }
  void setRow(int d, int r, uint8_t v) { rows[d][r] = v; }
};
