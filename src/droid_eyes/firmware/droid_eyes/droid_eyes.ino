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
//   EYES_USE_MATRIX    1 = two MAX7219 8x8 matrices (LedControl library)
//   EYES_USE_NEOPIXEL  1 = a NeoPixel ring (Adafruit_NeoPixel library)

#include "protocol.h"

#ifndef EYES_USE_MATRIX
#define EYES_USE_MATRIX 1
#endif
#ifndef EYES_USE_NEOPIXEL
#define EYES_USE_NEOPIXEL 0
#endif

#if EYES_USE_MATRIX
#include <LedControl.h>
// MAX7219 pins (the DJ R3X build; change to match your wiring).
#define PIN_MAX_DIN 12
#define PIN_MAX_CLK 11
#define PIN_MAX_CS 10
#define MATRIX_COUNT 2  // device 0 = left eye, device 1 = right eye
LedControl matrix(PIN_MAX_DIN, PIN_MAX_CLK, PIN_MAX_CS, MATRIX_COUNT);
#endif

#if EYES_USE_NEOPIXEL
#include <Adafruit_NeoPixel.h>
#define PIN_NEOPIXEL 6
#ifndef NEOPIXEL_COUNT
#define NEOPIXEL_COUNT 24          // e.g. two 12-pixel rings chained (left then right)
#endif
#define NEOPIXEL_MAX_BRIGHTNESS 96 // cap (0..255): keeps a USB-powered ring under ~500 mA
Adafruit_NeoPixel ring(NEOPIXEL_COUNT, PIN_NEOPIXEL, NEO_GRB + NEO_KHZ800);
#endif

#define FRAME_MS 20  // render at 50 Hz

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

static void showRows(uint8_t eye, const uint8_t rows[8], bool mirrorIt) {
  for (uint8_t r = 0; r < 8; r++) {
    uint8_t v = mirrorIt ? mirror(rows[r]) : rows[r];
    if (v != lastRows[eye][r]) {  // only changed rows: keeps the SPI traffic small
      matrix.setRow(eye, r, v);
      lastRows[eye][r] = v;
    }
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
    for (uint8_t e = 0; e < MATRIX_COUNT; e++) showRows(e, rows, false);  // all zero
    return;
  }
  int8_t intensity = (int8_t)(b * 15 / 255);
  if (intensity != lastIntensity) {
    for (uint8_t e = 0; e < MATRIX_COUNT; e++) matrix.setIntensity(e, intensity);
    lastIntensity = intensity;
  }
  showRows(0, shape, false);
  showRows(1, shape, mirrored);
}
#endif

#if EYES_USE_NEOPIXEL
static void renderRing(const EyeState &s, float phase, float lvl) {
  uint16_t n = ring.numPixels();
  float base = (s.brightness / 255.0f) * lvl;
  for (uint16_t i = 0; i < n; i++) {
    float k = base;
    float pos = (float)(i % (n / 2 ? n / 2 : 1)) / (n / 2 ? n / 2 : 1);  // per-eye position
    switch (s.pattern) {
      case EYES_PATTERN_SPIN:
      case EYES_PATTERN_THINKING: {
        float d = pos - phase;
        if (d < 0) d += 1;
        k *= d < 0.15f ? 1.0f - d / 0.15f : 0.05f;
        break;
      }
      case EYES_PATTERN_SPEAKING:
        k *= pos <= amplitude / 255.0f ? 1.0f : 0.1f;
        break;
      case EYES_PATTERN_SAD:
        k *= pos > 0.5f ? 0.6f : 0.1f;
        break;
      case EYES_PATTERN_ANGRY:
        k *= (phase < 0.5f) ? 1.0f : 0.6f;
        break;
      default: break;
    }
    ring.setPixelColor(i, ring.Color((uint8_t)(s.r * k), (uint8_t)(s.g * k), (uint8_t)(s.b * k)));
  }
  // show() blocks interrupts (~30 us per pixel): a byte arriving meanwhile may be lost.
  // Skip it while a frame is half received; the CRC/NACK/retry path covers the rest.
  if (rxLen == 0 && Serial.available() == 0) ring.show();
}
#endif

static void render(uint32_t now) {
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
}

// ---- main -------------------------------------------------------------------------------
void setup() {
  Serial.begin(EYES_BAUD);
  randomSeed(analogRead(A0) ^ (analogRead(A1) << 5) ^ micros());
  bootId = (uint16_t)random(1, 65535);
#if EYES_USE_MATRIX
  for (uint8_t e = 0; e < MATRIX_COUNT; e++) {
    matrix.shutdown(e, false);
    matrix.setIntensity(e, 2);
    matrix.clearDisplay(e);
    for (uint8_t r = 0; r < 8; r++) lastRows[e][r] = 0;
  }
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
}
