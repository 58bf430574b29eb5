// Adafruit_NeoPixel stand-in: records pixel colours.
#pragma once
#include "Arduino.h"
#define NEO_GRB 0x52
#define NEO_KHZ800 0x0000
class Adafruit_NeoPixel {
 public:
  std::vector<uint32_t> px;
  int shows = 0;
  Adafruit_NeoPixel(uint16_t n, int, int) : px(n, 0) {}
  void begin() {}
  void setBrightness(uint8_t) {}
  void clear() { std::fill(px.begin(), px.end(), 0); }
  void show() { shows++; }
  uint16_t numPixels() const { return (uint16_t)px.size(); }
  static uint32_t Color(uint8_t r, uint8_t g, uint8_t b) {
    return ((uint32_t)r << 16) | ((uint32_t)g << 8) | b;
  }
  void setPixelColor(uint16_t i, uint32_t c) { if (i < px.size()) px[i] = c; }
};
