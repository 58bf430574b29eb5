// ws2812.h: a small driver for a NeoPixel (WS2812B / SK6812, GRB, 800 kHz) ring, written
// for the droid's eyes (replaces the Adafruit NeoPixel library), ATmega328P at 16 MHz.
//
// Bits are sent by a cycle-counted loop: every bit is 20 cycles (1.25 us); a 0 is high for
// 6 cycles (375 ns), a 1 for 12 (750 ns). Interrupts are off only while one pixel's 24
// bits go out (~30 us) and on again between pixels, so a serial byte (one every 87 us at
// 115200 baud) never waits long enough to be lost. The data line then stays low for the
// few microseconds the interrupt takes, far below the >= 50 us that latches the pixels
// (WS2812B / SK6812; the first WS2812 generation may latch after ~9 us: do not use it).
//
// Data pin: D6 (PD6) on an Uno / Nano; change WS2812_PORT / WS2812_DDR / WS2812_BIT
// (the port must be an I/O register below 0x40, as PORTB/C/D are).
//
// Without __AVR__ (the host-side test build) show() only counts.
#pragma once
#include <stdint.h>
#include <string.h>

#ifndef NEOPIXEL_COUNT
#define NEOPIXEL_COUNT 24  // e.g. two 12-pixel rings chained (left then right)
#endif

#if defined(__AVR__)
#include <avr/interrupt.h>
#include <avr/io.h>
#if F_CPU != 16000000L
#error "ws2812.h counts cycles for 16 MHz"
#endif
#ifndef WS2812_PORT
#define WS2812_PORT PORTD
#define WS2812_DDR DDRD
#define WS2812_BIT 6  // D6
#endif
#endif

class NeoPixelRing {
 public:
  uint8_t grb[NEOPIXEL_COUNT * 3];  // what show() sends, brightness applied
  unsigned long shows = 0;

  void begin() {
    memset(grb, 0, sizeof(grb));
#if defined(__AVR__)
    WS2812_PORT &= ~_BV(WS2812_BIT);
    WS2812_DDR |= _BV(WS2812_BIT);
#endif
  }
  // 0..255; applies to the colours set afterwards.
  void setBrightness(uint8_t b) { scale_ = (uint16_t)b + 1; }
  uint16_t numPixels() const { return NEOPIXEL_COUNT; }
  void clear() { memset(grb, 0, sizeof(grb)); }
  void setPixel(uint16_t i, uint8_t r, uint8_t g, uint8_t b) {
    if (i >= NEOPIXEL_COUNT) return;
    uint8_t *p = grb + 3 * i;
    p[0] = (uint8_t)((g * scale_) >> 8);
    p[1] = (uint8_t)((r * scale_) >> 8);
    p[2] = (uint8_t)((b * scale_) >> 8);
  }
  // 0xRRGGBB as sent (brightness applied).
  uint32_t pixel(uint16_t i) const {
    const uint8_t *p = grb + 3 * i;
    return ((uint32_t)p[1] << 16) | ((uint32_t)p[0] << 8) | p[2];
  }

  void show() {
    shows++;
#if defined(__AVR__)
    const uint8_t *p = grb;
    for (uint16_t i = 0; i < NEOPIXEL_COUNT; i++) {
      uint8_t sreg = SREG;
      cli();
      uint8_t hi = WS2812_PORT | _BV(WS2812_BIT);
      uint8_t lo = WS2812_PORT & ~_BV(WS2812_BIT);
      uint8_t n = 3, byte, bit;
      // Cycle counts per bit (t = 0 at the first OUT): 0 -> low at t = 6, 1 -> low at
      // t = 12, next bit high at t = 20 (a byte boundary adds a few low cycles: harmless).
      asm volatile(
          "1:  ld   %[byte], %a[ptr]+   \n\t"
          "    ldi  %[bit], 8           \n\t"
          "2:  out  %[port], %[hi]      \n\t"  // t=0   high
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    sbrs %[byte], 7          \n\t"  // t=5   a 1 skips the next OUT (2 cycles)
          "    out  %[port], %[lo]      \n\t"  // t=6   a 0 ends here
          "    lsl  %[byte]             \n\t"  // t=7
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    out  %[port], %[lo]      \n\t"  // t=12  a 1 ends here
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    nop                      \n\t"
          "    dec  %[bit]              \n\t"  // t=17
          "    brne 2b                  \n\t"  // t=18, 2 cycles -> t=20
          "    dec  %[n]                \n\t"
          "    brne 1b                  \n\t"
          : [byte] "=&r"(byte), [bit] "=&d"(bit), [ptr] "+e"(p), [n] "+r"(n)
          : [port] "I"(_SFR_IO_ADDR(WS2812_PORT)), [hi] "r"(hi), [lo] "r"(lo));
      SREG = sreg;  // a pending serial (or timer) interrupt runs here, between pixels
    }
#endif
  }

 private:
  uint16_t scale_ = 256;
};
