// max7219.h: a small, fast driver for a daisy chain of MAX7219 LED drivers (one 8x8
// matrix each), written for the droid's eyes (replaces the LedControl library).
//
// One call writes the same register of every device in the chain with a single CS (LOAD)
// pulse. On the AVR the bits go out with direct port writes (sbi/cbi, ~10 cycles a bit):
// 32 bits for two devices take ~25 us at 16 MHz, where LedControl's shiftOut() and
// digitalWrite() took ~450 us per device and register, long enough to overflow the
// 64-byte serial receive buffer while a whole shape was redrawn.
//
// Wiring (Arduino Uno / Nano; change the MAX7219_* macros below for other pins; each pin
// is a PORT register and a bit: D0-D7 = PORTD 0-7, D8-D13 = PORTB 0-5, A0-A5 = PORTC 0-5):
//   DIN -> D12 (PB4)   CLK -> D11 (PB3)   CS/LOAD -> D10 (PB2)
// Device 0 is the first of the chain (its DIN on the Arduino), device 1 the next one.
//
// Without __AVR__ (the host-side test build) the same class records the registers.
#pragma once
#include <stdint.h>
#include <string.h>

#ifndef MAX7219_COUNT
#define MAX7219_COUNT 2
#endif

enum : uint8_t {
  MAX7219_NOOP = 0x0,
  MAX7219_DIGIT0 = 0x1,  // rows 0..7 are digit registers 1..8
  MAX7219_DECODE = 0x9,
  MAX7219_INTENSITY = 0xA,
  MAX7219_SCAN_LIMIT = 0xB,
  MAX7219_SHUTDOWN = 0xC,
  MAX7219_TEST = 0xF,
};

#if defined(__AVR__)
#include <avr/io.h>

#ifndef MAX7219_DIN_PORT
#define MAX7219_DIN_PORT PORTB
#define MAX7219_DIN_DDR DDRB
#define MAX7219_DIN_BIT 4  // D12
#endif
#ifndef MAX7219_CLK_PORT
#define MAX7219_CLK_PORT PORTB
#define MAX7219_CLK_DDR DDRB
#define MAX7219_CLK_BIT 3  // D11
#endif
#ifndef MAX7219_CS_PORT
#define MAX7219_CS_PORT PORTB
#define MAX7219_CS_DDR DDRB
#define MAX7219_CS_BIT 2  // D10
#endif

class Max7219Chain {
 public:
  void begin() {
    MAX7219_CS_PORT |= _BV(MAX7219_CS_BIT);
    MAX7219_CLK_PORT &= ~_BV(MAX7219_CLK_BIT);
    MAX7219_CS_DDR |= _BV(MAX7219_CS_BIT);
    MAX7219_CLK_DDR |= _BV(MAX7219_CLK_BIT);
    MAX7219_DIN_DDR |= _BV(MAX7219_DIN_BIT);
  }

  // Register `reg` of device d := data[d], for every device of the chain.
  void write(uint8_t reg, const uint8_t data[MAX7219_COUNT]) {
    MAX7219_CS_PORT &= ~_BV(MAX7219_CS_BIT);
    // The first 16 bits shifted in travel to the last device of the chain.
    for (int8_t d = MAX7219_COUNT - 1; d >= 0; d--) {
      shift(reg);
      shift(data[d]);
    }
    MAX7219_CS_PORT |= _BV(MAX7219_CS_BIT);  // rising edge: every device latches
  }

  void writeAll(uint8_t reg, uint8_t value) {
    uint8_t data[MAX7219_COUNT];
    memset(data, value, sizeof(data));
    write(reg, data);
  }

 private:
  // MSB first; DIN is sampled on CLK's rising edge (set-up time 25 ns, clock <= 10 MHz).
  static inline void shift(uint8_t v) {
    for (uint8_t i = 0; i < 8; i++) {
      if (v & 0x80) MAX7219_DIN_PORT |= _BV(MAX7219_DIN_BIT);
      else MAX7219_DIN_PORT &= ~_BV(MAX7219_DIN_BIT);
      MAX7219_CLK_PORT |= _BV(MAX7219_CLK_BIT);
      v <<= 1;
      MAX7219_CLK_PORT &= ~_BV(MAX7219_CLK_BIT);
    }
  }
};

#else  // host build: record what the devices would hold

class Max7219Chain {
 public:
  uint8_t regs[MAX7219_COUNT][16] = {};
  unsigned long writes = 0;
  void begin() {}
  void write(uint8_t reg, const uint8_t data[MAX7219_COUNT]) {
    for (int d = 0; d < MAX7219_COUNT; d++) regs[d][reg & 0x0F] = data[d];
    writes++;
  }
  void writeAll(uint8_t reg, uint8_t value) {
    uint8_t data[MAX7219_COUNT];
    memset(data, value, sizeof(data));
    write(reg, data);
  }
};

#endif
