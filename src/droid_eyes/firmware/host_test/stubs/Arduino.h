// Minimal Arduino API for compiling the sketch on the host (tests only).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

#ifndef PI
#define PI 3.14159265358979f
#endif
#define A0 14
#define A1 15

extern unsigned long g_millis;
inline unsigned long millis() { return g_millis; }
inline unsigned long micros() { return g_millis * 1000UL; }
inline int analogRead(int pin) { return pin * 7; }
inline void randomSeed(unsigned long s) { srand((unsigned)s); }
inline long random(long lo, long hi) { return lo + rand() % (hi - lo); }
using std::cos;

struct HostSerial {
  std::deque<uint8_t> in;
  std::vector<uint8_t> out;
  void begin(unsigned long) {}
  int available() { return (int)in.size(); }
  int read() {
    if (in.empty()) return -1;
    int c = in.front();
    in.pop_front();
    return c;
  }
  size_t write(const uint8_t *buf, size_t n) {
    out.insert(out.end(), buf, buf + n);
    return n;
  }
};
extern HostSerial Serial;
