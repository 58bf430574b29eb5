// droid_eyes.ino: the droid's eye LEDs (DJ R3X build) driven over USB serial.
//
// Hardware (see README.md in this folder): an Arduino Uno/Nano (ATmega328P) with two
// daisy-chained 8x8 MAX7219 matrices (one per eye) and, with EYES_USE_NEOPIXEL=1, a
// NeoPixel ring. The host (the `eyes` ROS node) sends binary frames (protocol.h,
// GENERATED from droid_eyes/protocol.py: do not edit it by hand).
//
// Protocol summary: START LEN TYPE SEQ PAYLOAD CRC16. SET_STATE and FULL_STATE are
// ACKed (or NACKed); AMPLITUDE and HEARTBEAT are not. The sketch sends DEV_HELLO when it
// boots and in reply to HELLO, and DEV_HEARTBEAT every EYES_HEARTBEAT_MS. When the host
// goes quiet for EYES_LINK_TIMEOUT_MS it shows a dim "link lost" pulse until a frame
// arrives again (the host then resends FULL_STATE).
//
// Compile-time switches (set here or with arduino-cli --build-property
// "compiler.cpp.extra_flags=-DEYES_USE_NEOPIXEL=1"):
//   EYES_USE_MATRIX    1 = two MAX7219 8x8 matrices (max7219.h, our driver)
//   EYES_USE_NEOPIXEL  1 = a NeoPixel ring (ws2812.h, our driver)
// No libraries beyond the Arduino core: both drivers are in this folder.
//
// Never losing a byte: the core's serial receive buffer holds 64 bytes, 5.5 ms at 115200
// baud. Nothing here keeps the loop away from the serial port for more than a fraction
// of that: the matrices are written with direct port writes, only the rows that changed
// (~25 us a row for both eyes), the ring with interrupts on between pixels; the longest
// render() is ~0.75 ms (matrices) / ~1.8 ms (and a 24-pixel ring). So back-to-back
// frames at the full line rate are all received and acknowledged (the simulator tests,
// test/test_eyes_firmware_sim.py, send such bursts).

#include "protocol.h"
#if defined(__AVR__)
#include <avr/eeprom.h>
#include <avr/sleep.h>
#endif

#ifndef EYES_USE_MATRIX
#define EYES_USE_MATRIX 1
#endif
#ifndef EYES_USE_NEOPIXEL
#define EYES_USE_NEOPIXEL 0
#endif

#if EYES_USE_MATRIX
// MAX7219 pins: DIN D12, CLK D11, CS D10 (the DJ R3X build; see max7219.h to change them).
#define MATRIX_COUNT 2  // device 0 = left eye, device 1 = right eye
#define MAX7219_COUNT MATRIX_COUNT
#include "max7219.h"
static Max7219Chain matrix;
#endif

#if EYES_USE_NEOPIXEL
// NeoPixel data on D6 (see ws2812.h to change it).
#include "ws2812.h"
#define NEOPIXEL_MAX_BRIGHTNESS 96 // cap (0..255): keeps a USB-powered ring under ~500 mA
static NeoPixelRing ring;
#endif

#define FRAME_MS 20  // render at 50 Hz
#define REFRESH_MS 1000  // rewrite every MAX7219 register this often (heals glitches)
#define EYES_EEPROM_BOOT_COUNTER 0  // EEPROM address of the 16-bit boot counter

// Counters for tests and debugging (the simulator reads them from RAM; not on the wire).
struct EyesCounters {
  uint16_t frames;       // good frames received
  uint16_t amplitudes;   // of which AMPLITUDE
  uint16_t badFrames;    // bad CRC / bad length
  uint16_t renders;      // render() calls
  uint16_t renderMaxUs;  // longest render() [us]
};
EyesCounters eyes_counters __attribute__((used));

// ---- state ------------------------------------------------------------------------------
struct EyeState {
  uint8_t pattern;
  uint8_t r, g, b;
  uint8_t brightness;
  uint16_t speedCentiHz;
};

static EyeState state = {EYES_PATTERN_SOLID, 0, 90, 255, 40, 0};  // a dim blue "alive" look
static uint8_t amplitude = 0;
static uint16_t bootId = 0;
static uint8_t lastSeq = 0;
static uint8_t rxErrors = 0;
static uint32_t lastHostMs = 0;
static uint32_t lastHeartbeatMs = 0;
static uint32_t lastFrameMs = 0;
#if EYES_USE_MATRIX
static uint32_t lastRefreshMs = 0;
#endif

static uint8_t rxBuf[EYES_MAX_FRAME];
static uint8_t rxLen = 0;

// ---- CRC-16/CCITT-FALSE -----------------------------------------------------------------
static uint16_t crc16(const uint8_t *data, uint8_t len) {
  uint16_t crc = EYES_CRC_INIT;
  for (uint8_t i = 0; i < len; i++) {
    crc ^= (uint16_t)data[i] << 8;
    for (uint8_t b = 0; b < 8; b++) {
      crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ EYES_CRC_POLY) : (uint16_t)(crc << 1);
    }
  }
  return crc;
}

// ---- sending ----------------------------------------------------------------------------
static void sendFrame(uint8_t type, uint8_t seq, const uint8_t *payload, uint8_t len) {
  uint8_t buf[EYES_MAX_FRAME];
  buf[0] = EYES_START;
  buf[1] = len;
  buf[2] = type;
  buf[3] = seq;
  for (uint8_t i = 0; i < len; i++) buf[EYES_HEADER_SIZE + i] = payload[i];
  uint16_t crc = crc16(buf + 1, 3 + len);
  buf[EYES_HEADER_SIZE + len] = crc >> 8;
  buf[EYES_HEADER_SIZE + len + 1] = crc & 0xFF;
  Serial.write(buf, EYES_HEADER_SIZE + len + EYES_CRC_SIZE);
}

static uint8_t capabilities() {
  uint8_t caps = 0;
#if EYES_USE_MATRIX
  caps |= EYES_CAP_MATRIX;
#endif
#if EYES_USE_NEOPIXEL
  caps |= EYES_CAP_NEOPIXEL;
#endif
  return caps;
}

static void sendHello(uint8_t seq) {
  uint8_t p[EYES_DEV_HELLO_SIZE] = {EYES_PROTOCOL_VERSION, (uint8_t)(bootId >> 8),
                                    (uint8_t)(bootId & 0xFF), capabilities()};
  sendFrame(EYES_T_DEV_HELLO, seq, p, sizeof(p));
}

static void sendHeartbeat() {
  uint8_t p[EYES_DEV_HEARTBEAT_SIZE] = {(uint8_t)(bootId >> 8), (uint8_t)(bootId & 0xFF),
                                        lastSeq, rxErrors};
  sendFrame(EYES_T_DEV_HEARTBEAT, 0, p, sizeof(p));
}

static void ack(uint8_t seq, uint8_t type) { sendFrame(EYES_T_ACK, seq, &type, 1); }
static void nack(uint8_t seq, uint8_t reason) { sendFrame(EYES_T_NACK, seq, &reason, 1); }

// ---- receiving --------------------------------------------------------------------------
static void applyState(const uint8_t *p) {
  state.pattern = p[0] < EYES_PATTERN_COUNT ? p[0] : EYES_PATTERN_SOLID;
  state.r = p[1];
  state.g = p[2];
  state.b = p[3];
  state.brightness = p[4];
  state.speedCentiHz = ((uint16_t)p[5] << 8) | p[6];
}

static void handleFrame(uint8_t type, uint8_t seq, const uint8_t *p, uint8_t len) {
  lastHostMs = millis();
  eyes_counters.frames++;
  switch (type) {
    case EYES_T_HELLO:
      if (len >= 1 && p[0] == EYES_PROTOCOL_VERSION) sendHello(seq);
      else nack(seq, EYES_NACK_BAD_VERSION);
      break;
    case EYES_T_HEARTBEAT:
      break;
    case EYES_T_SET_STATE:
      if (len != EYES_STATE_SIZE) { nack(seq, EYES_NACK_BAD_PAYLOAD); break; }
      applyState(p);
      lastSeq = seq;
      ack(seq, type);
      break;
    case EYES_T_FULL_STATE:
      if (len != EYES_FULL_STATE_SIZE) { nack(seq, EYES_NACK_BAD_PAYLOAD); break; }
      applyState(p);
      amplitude = p[EYES_STATE_SIZE];
      lastSeq = seq;
      ack(seq, type);
      break;
    case EYES_T_AMPLITUDE:
      if (len == 1) amplitude = p[0];
      eyes_counters.amplitudes++;
      break;
    default:
      nack(seq, EYES_NACK_UNKNOWN_TYPE);
  }
}

static void dropRx(uint8_t n) {
  if (n >= rxLen) { rxLen = 0; return; }
  memmove(rxBuf, rxBuf + n, rxLen - n);
  rxLen -= n;
}

// Same algorithm as droid_eyes.protocol.Decoder: find START, check LEN and CRC; after a
// bad frame drop only the start byte and rescan, so the next good frame is found.
static void processRx() {
  for (;;) {
    uint8_t i = 0;
    while (i < rxLen && rxBuf[i] != EYES_START) i++;
    if (i) dropRx(i);
    if (rxLen < EYES_HEADER_SIZE) return;
    uint8_t len = rxBuf[1];
    if (len > EYES_MAX_PAYLOAD) {
      if (rxErrors < 255) rxErrors++;
      eyes_counters.badFrames++;
      nack(rxBuf[3], EYES_NACK_BAD_LENGTH);
      dropRx(1);
      continue;
    }
    uint8_t total = EYES_HEADER_SIZE + len + EYES_CRC_SIZE;
    if (rxLen < total) return;
    uint16_t got = ((uint16_t)rxBuf[total - 2] << 8) | rxBuf[total - 1];
    if (crc16(rxBuf + 1, 3 + len) == got) {
      handleFrame(rxBuf[2], rxBuf[3], rxBuf + EYES_HEADER_SIZE, len);
      dropRx(total);
    } else {
      if (rxErrors < 255) rxErrors++;
      eyes_counters.badFrames++;
      nack(rxBuf[3], EYES_NACK_BAD_CRC);
      dropRx(1);
    }
  }
}

static void pollSerial() {
  while (Serial.available() > 0) {
    int c = Serial.read();
    if (c < 0) break;
    if (rxLen >= EYES_MAX_FRAME) dropRx(1);  // cannot happen with a sane LEN; be safe
    rxBuf[rxLen++] = (uint8_t)c;
    processRx();
  }
}

// ---- animation --------------------------------------------------------------------------
static float defaultSpeed(uint8_t pattern) {
  switch (pattern) {
    case EYES_PATTERN_BLINK: return 0.3f;
    case EYES_PATTERN_PULSE: return 0.5f;
    case EYES_PATTERN_SPIN: return 1.0f;
    case EYES_PATTERN_THINKING: return 1.5f;
    default: return 1.0f;
  }
}

// Phase in [0, 1) of the current pattern's cycle.
static float cyclePhase(const EyeState &s, uint32_t now) {
  float hz = s.speedCentiHz ? s.speedCentiHz / 100.0f : defaultSpeed(s.pattern);
  float cycles = (now % 3600000UL) / 1000.0f * hz;
  return cycles - (long)cycles;
}

// Brightness multiplier (0..1) of a pattern at this moment.
static float level(const EyeState &s, float phase) {
  switch (s.pattern) {
    case EYES_PATTERN_OFF: return 0.0f;
    case EYES_PATTERN_BLINK: return phase < 0.9f ? 1.0f : 0.0f;
    case EYES_PATTERN_PULSE: return 0.15f + 0.85f * (0.5f - 0.5f * cos(phase * 2 * PI));
    case EYES_PATTERN_SPEAKING: return 0.2f + 0.8f * (amplitude / 255.0f);
    default: return 1.0f;
  }
}

#if EYES_USE_MATRIX
// Eye shapes, rows top to bottom, MSB = leftmost column (left eye, the viewer's left;
// the right eye is mirrored). Sad lids rise towards the nose, angry lids fall.
static const uint8_t SHAPE_OPEN[8] = {0x3C, 0x7E, 0xFF, 0xFF, 0xFF, 0xFF, 0x7E, 0x3C};
static const uint8_t SHAPE_WIDE[8] = {0x3C, 0x7E, 0xFF, 0xE7, 0xE7, 0xFF, 0x7E, 0x3C};
static const uint8_t SHAPE_HAPPY[8] = {0x00, 0x18, 0x3C, 0x66, 0xC3, 0x81, 0x00, 0x00};
static const uint8_t SHAPE_SAD[8] = {0x00, 0x00, 0x03, 0x0F, 0x3F, 0xFF, 0x7E, 0x3C};   // / \ lids
static const uint8_t SHAPE_ANGRY[8] = {0x00, 0x00, 0xC0, 0xF0, 0xFC, 0xFF, 0x7E, 0x3C}; // \ / lids
static const uint8_t SHAPE_CLOSED[8] = {0x00, 0x00, 0x00, 0x00, 0x7E, 0x00, 0x00, 0x00};

static uint8_t mirror(uint8_t v) {
  uint8_t out = 0;
  for (uint8_t i = 0; i < 8; i++) if (v & (1 << i)) out |= 0x80 >> i;
  return out;
}

static uint8_t lastRows[MATRIX_COUNT][8];
static int8_t lastIntensity = -1;

// Every register of every device, as the sketch wants them (at boot and every REFRESH_MS:
// a MAX7219 glitched by noise, or powered up after the Arduino, comes back by itself).
static void refreshMatrix() {
  matrix.writeAll(MAX7219_TEST, 0);
  matrix.writeAll(MAX7219_DECODE, 0);
  matrix.writeAll(MAX7219_SCAN_LIMIT, 7);
  matrix.writeAll(MAX7219_INTENSITY, lastIntensity < 0 ? 0 : (uint8_t)lastIntensity);
  for (uint8_t r = 0; r < 8; r++) {
    uint8_t data[MATRIX_COUNT];
    for (uint8_t e = 0; e < MATRIX_COUNT; e++) data[e] = lastRows[e][r];
    matrix.write(MAX7219_DIGIT0 + r, data);
  }
  matrix.writeAll(MAX7219_SHUTDOWN, 1);
}

// Both eyes' rows; only the rows that changed go out (one transfer per row for both).
static void showRows(const uint8_t left[8], const uint8_t right[8]) {
  for (uint8_t r = 0; r < 8; r++) {
    if (left[r] == lastRows[0][r] && right[r] == lastRows[1][r]) continue;
    uint8_t data[MATRIX_COUNT] = {left[r], right[r]};
    matrix.write(MAX7219_DIGIT0 + r, data);
    lastRows[0][r] = left[r];
    lastRows[1][r] = right[r];
  }
}

static void renderMatrix(const EyeState &s, float phase, float lvl) {
  uint8_t rows[8];
  const uint8_t *shape = SHAPE_OPEN;
  bool mirrored = true;
  memset(rows, 0, sizeof(rows));
  switch (s.pattern) {
    case EYES_PATTERN_OFF: shape = 0; break;
    case EYES_PATTERN_BLINK: shape = lvl > 0 ? SHAPE_OPEN : SHAPE_CLOSED; lvl = 1; break;
    case EYES_PATTERN_LISTENING: shape = SHAPE_WIDE; break;
    case EYES_PATTERN_HAPPY: shape = SHAPE_HAPPY; break;
    case EYES_PATTERN_SAD: shape = SHAPE_SAD; break;
    case EYES_PATTERN_ANGRY: shape = SHAPE_ANGRY; break;
    case EYES_PATTERN_SPEAKING: {
      // The eye opens with the voice: rows around the middle, height from amplitude.
      uint8_t half = 1 + (uint8_t)(amplitude * 3 / 255);
      for (uint8_t r = 4 - half; r < 4 + half; r++) rows[r] = SHAPE_OPEN[r];
      shape = rows;
      break;
    }
    case EYES_PATTERN_SPIN: {
      // One lit pixel running round the 28-pixel border, with a 3-pixel tail.
      static const uint8_t ring_r[28] = {0,0,0,0,0,0,0,0,1,2,3,4,5,6,7,7,7,7,7,7,7,7,6,5,4,3,2,1};
      static const uint8_t ring_c[28] = {0,1,2,3,4,5,6,7,7,7,7,7,7,7,7,6,5,4,3,2,1,0,0,0,0,0,0,0};
      uint8_t head = (uint8_t)(phase * 28) % 28;
      for (uint8_t k = 0; k < 4; k++) {
        uint8_t i = (head + 28 - k) % 28;
        rows[ring_r[i]] |= 0x80 >> ring_c[i];
      }
      shape = rows;
      mirrored = false;
      break;
    }
    case EYES_PATTERN_THINKING: {
      // A 2-column bar sweeping left to right and back.
      float x = phase < 0.5f ? phase * 2 : 2 - phase * 2;
      uint8_t col = (uint8_t)(x * 6.99f);
      for (uint8_t r = 2; r < 6; r++) rows[r] = (0xC0 >> col);
      shape = rows;
      mirrored = false;
      break;
    }
    default: break;
  }
  uint16_t b = (uint16_t)(s.brightness * lvl);
  if (shape == 0 || b == 0) {
    memset(rows, 0, sizeof(rows));
    showRows(rows, rows);  // all dark
    return;
  }
  int8_t intensity = (int8_t)(b * 15 / 255);
  if (intensity != lastIntensity) {
    matrix.writeAll(MAX7219_INTENSITY, (uint8_t)intensity);
    lastIntensity = intensity;
  }
  uint8_t right[8];
  for (uint8_t r = 0; r < 8; r++) right[r] = mirrored ? mirror(shape[r]) : shape[r];
  showRows(shape, right);
}
#endif

#if EYES_USE_NEOPIXEL
// Integer maths per pixel (256 = 1.0): float on the AVR costs ~100 us a pixel, which
// would keep the loop away from the serial port for milliseconds.
static void renderRing(const EyeState &s, float phase, float lvl) {
  const uint16_t n = ring.numPixels();
  const uint16_t half = n / 2 ? n / 2 : 1;  // pixels per eye
  const uint16_t step = (uint16_t)(65536UL / half > 65535UL ? 65535UL : 65536UL / half);
  const uint8_t phase8 = (uint8_t)(phase * 256);
  uint16_t scale = (uint16_t)(s.brightness * lvl + 0.5f);  // 0..255
  scale += scale >> 7;                                       // 0..256
  uint16_t pos = 0;                                          // position in the eye, 8.8
  for (uint16_t i = 0; i < n; i++) {
    if (i == half) pos = 0;
    const uint8_t pos8 = pos >> 8;
    pos += step;
    uint16_t f = 256;
    switch (s.pattern) {
      case EYES_PATTERN_SPIN:
      case EYES_PATTERN_THINKING: {
        // a bright head running round the ring with a 15 % tail
        const uint8_t d = (uint8_t)(pos8 - phase8);
        f = d < 38 ? 256 - d * 256u / 38 : 13;
        break;
      }
      case EYES_PATTERN_SPEAKING:
        f = pos8 <= amplitude ? 256 : 26;
        break;
      case EYES_PATTERN_SAD:
        f = pos8 > 128 ? 154 : 26;
        break;
      case EYES_PATTERN_ANGRY:
        f = phase8 < 128 ? 256 : 154;
        break;
      default: break;
    }
    const uint16_t m = (uint16_t)(((uint32_t)scale * f) >> 8);  // 0..256 (int is 16-bit)
    ring.setPixel(i, (uint8_t)((s.r * m) >> 8), (uint8_t)((s.g * m) >> 8),
                  (uint8_t)((s.b * m) >> 8));
  }
  ring.show();  // interrupts stay on between pixels: no serial byte is lost
}
#endif

static void render(uint32_t now) {
  uint32_t t0 = micros();
  EyeState s = state;
  if (now - lastHostMs > EYES_LINK_TIMEOUT_MS) {
    // Link lost: a slow dim pulse in the last colour until the host is back.
    s.pattern = EYES_PATTERN_PULSE;
    s.speedCentiHz = 30;
    if (s.brightness > 40 || s.brightness == 0) s.brightness = 40;
  }
  float phase = cyclePhase(s, now);
  float lvl = level(s, phase);
#if EYES_USE_MATRIX
  renderMatrix(s, phase, lvl);
#endif
#if EYES_USE_NEOPIXEL
  renderRing(s, phase, lvl);
#endif
#if !EYES_USE_MATRIX && !EYES_USE_NEOPIXEL
  (void)lvl;  // nothing to show: the link only
#endif
  uint32_t took = micros() - t0;
  eyes_counters.renders++;
  if (took > eyes_counters.renderMaxUs) eyes_counters.renderMaxUs = took > 65535 ? 65535 : took;
}

// ---- main -------------------------------------------------------------------------------
// A boot id that differs from the last boot's: a boot counter in EEPROM (2 bytes, one
// write per boot) mixed with analog noise.
static uint16_t makeBootId() {
  uint16_t noise = (uint16_t)(analogRead(A0) ^ (analogRead(A1) << 5) ^ micros());
#if defined(__AVR__)
  uint16_t *const counterAddr = (uint16_t *)EYES_EEPROM_BOOT_COUNTER;
  uint16_t boots = eeprom_read_word(counterAddr) + 1;
  eeprom_update_word(counterAddr, boots);
#else
  uint16_t boots = 1;
#endif
  randomSeed(((uint32_t)boots << 16) | noise);
  uint16_t id = (uint16_t)(boots * 40503u + (noise & 0xFF));
  return id ? id : 1;
}

// Sleep until the next interrupt (a serial byte, the 1 ms timer tick): same behaviour,
// less power, and a simulator skips the idle cycles.
static void idle() {
#if defined(__AVR__)
  set_sleep_mode(SLEEP_MODE_IDLE);
  cli();
  if (Serial.available() == 0) {
    sleep_enable();
    sei();  // the instruction after SEI runs before any interrupt: no lost wake-up
    sleep_cpu();
    sleep_disable();
  }
  sei();
#endif
}

void setup() {
  bootId = makeBootId();
  Serial.begin(EYES_BAUD);
#if EYES_USE_MATRIX
  matrix.begin();
  lastIntensity = 2;
  memset(lastRows, 0, sizeof(lastRows));
  refreshMatrix();
#endif
#if EYES_USE_NEOPIXEL
  ring.begin();
  ring.setBrightness(NEOPIXEL_MAX_BRIGHTNESS);
  ring.clear();
  ring.show();
#endif
  lastHostMs = millis();
  sendHello(0);  // boot announcement: the host resyncs the full state
}

void loop() {
  pollSerial();
  uint32_t now = millis();
  if (now - lastHeartbeatMs >= EYES_HEARTBEAT_MS) {
    lastHeartbeatMs = now;
    sendHeartbeat();
  }
  if (now - lastFrameMs >= FRAME_MS) {
    lastFrameMs = now;
    render(now);
  }
#if EYES_USE_MATRIX
  if (now - lastRefreshMs >= REFRESH_MS) {
    lastRefreshMs = now;
    refreshMatrix();
  }
#endif
  idle();
}
