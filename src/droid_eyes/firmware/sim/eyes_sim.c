/* eyes_sim: runs the eyes firmware (an AVR ELF) in simavr, in real time, as a board on a
 * pseudo-terminal: what a test (or a person) talks to instead of an Arduino.
 *
 *   eyes_sim [options] firmware.elf
 *     --link PATH        make PATH a symlink to the board's pty (the "device" the host opens)
 *     --max DIN,CLK,CS   MAX7219 chain pins, as port+bit (default B4,B3,B2 = D12,D11,D10);
 *                        "none" to not decode
 *     --max-count N      devices in the chain (default 2)
 *     --ring PIN         NeoPixel data pin (default D6); "none" to not decode
 *     --speed X          simulated seconds per wall-clock second (default 1: real time;
 *                        0: as fast as the host can)
 *     --reset-on-open    reset the MCU when the host opens the port (the DTR auto-reset
 *                        of an Uno / Nano; off by default)
 *     --boot-ms N        after a reset the MCU starts N ms later, bytes meanwhile are lost
 *                        (what a bootloader's wait looks like; default 0)
 *     --watch SYM[:N]    report the N-byte (default 2, little-endian) RAM variable SYM, or
 *                        each uint16 of a struct with SYM:Nx2, in STATS
 *
 * Commands, one a line on stdin: reset | unplug | plug | stats | quit (EOF = quit).
 * Output, one event a line on stdout (times in simulated microseconds since start):
 *   READY <pty> <link>                 the board is powered and its pty is open
 *   MAX <us> <dev0> <dev1> ...         the MAX7219 chain shows something new; each device
 *                                      is "<intensity>:<16 hex digits, rows 0..7>" or
 *                                      "off" (shut down) - device 0 is the first in the chain
 *   RING <us> <n> <hex GRB bytes>      the NeoPixels latched new colours
 *   RESET <us> <why>                   the MCU was reset (command / open / power)
 *   UNPLUGGED <us> | PLUGGED <us> <pty>
 *   HOST <us> open|closed              the host opened / closed the port
 *   CRASH <us> <state>                 the MCU stopped (a real board would hang)
 *   STATS key=value ...                in reply to "stats"
 *   BYE                                before exiting on quit / EOF / SIGTERM
 *
 * The UART bridge is ours (not simavr's uart_pty, which always creates /tmp/simavr-uart0
 * and can hang in uart_pty_stop()): bytes from the host enter the simulated UART at the
 * line rate, one per frame time of the configured baud rate, and - like the real USART,
 * with its 2-byte receive buffer and shift register - a byte that finds 3 unread bytes
 * waiting is lost ("overruns" in STATS). Everything runs in one thread; stop is immediate.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "avr_adc.h"
#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"
#include "sim_time.h"

DEFINE_FIFO(uint16_t, uart_fifo);   /* the accessors of the UART's input FIFO type */

#define MAX_DEVICES 8
#define RXQ_SIZE 16384
#define TXQ_SIZE 16384
#define RING_MAX_BYTES (3 * 256)
#define UART_HW_DEPTH 3          /* 2-byte receive buffer + the shift register */
#define CHUNK_US 100             /* simulate this much, then look at the world */
#define MAX_LAG_US 200000        /* further behind real time than this: stop catching up */
#define MAX_WATCH 8

static volatile sig_atomic_t g_stop;
static avr_t *avr;
static avr_uart_t *uart0;
static double speed = 1.0;
static int reset_on_open, boot_ms;
static const char *link_path;

/* ---- output ------------------------------------------------------------------------------ */
static unsigned long long sim_us(void) { return avr ? avr_cycles_to_usec(avr, avr->cycle) : 0; }

static void emit(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

/* ---- pins ---------------------------------------------------------------------------------- */
typedef struct { char port; int bit; } pin_t;

static int parse_pin(const char *s, pin_t *p) {
  /* "B4" (port + bit) or "D12" style Arduino Uno pin numbers are ambiguous for D: we take
   * port letter + bit, so D6 means PD6 (Arduino D6), B4 means PB4 (Arduino D12). */
  if (strlen(s) != 2 || s[0] < 'A' || s[0] > 'L' || s[1] < '0' || s[1] > '7') return -1;
  p->port = s[0];
  p->bit = s[1] - '0';
  return 0;
}

/* ---- MAX7219 chain decoder ----------------------------------------------------------------- */
typedef struct {
  uint8_t digit[8], intensity, scan_limit, decode, shutdown, test;
} max_dev_t;

static struct {
  int enabled, count;
  pin_t din, clk, cs;
  int din_v, clk_v, cs_v;
  uint64_t shift;      /* the last 16*count bits shifted in (bit 0 = the newest) */
  int bits;            /* bits shifted since CS went low */
  max_dev_t dev[MAX_DEVICES];
  char last[MAX_DEVICES * 24 + 8];
  unsigned long latches, bad_latches;
} mx = {.enabled = 1, .count = 2, .din = {'B', 4}, .clk = {'B', 3}, .cs = {'B', 2}};

static void max_power_on(void) {
  for (int d = 0; d < MAX_DEVICES; d++) {
    memset(&mx.dev[d], 0, sizeof(mx.dev[d]));
    mx.dev[d].shutdown = 1; /* a MAX7219 powers up shut down */
  }
  mx.shift = 0;
  mx.bits = 0;
  mx.last[0] = 0;
}

/* What the chain shows, printed once it has been stable for MAX_SETTLE_US (a redraw
 * writes one row at a time; nobody sees the 25 us in between). */
#define MAX_SETTLE_US 500
static avr_cycle_count_t max_changed_at;

static avr_cycle_count_t max_show(struct avr_t *a, avr_cycle_count_t when, void *param) {
  (void)a;
  (void)when;
  (void)param;
  char line[sizeof(mx.last)];
  int n = 0;
  for (int d = 0; d < mx.count; d++) {
    max_dev_t *v = &mx.dev[d];
    if (v->test) {
      n += snprintf(line + n, sizeof(line) - n, " 15:ffffffffffffffff");
    } else if (v->shutdown) {
      n += snprintf(line + n, sizeof(line) - n, " off");
    } else {
      n += snprintf(line + n, sizeof(line) - n, " %d:", v->intensity & 0x0F);
      for (int r = 0; r < 8; r++) {
        /* scan limit: digits above it are not shown; decode mode would show font
         * segments, which the eyes never use: report the raw bits */
        uint8_t bits = r <= (v->scan_limit & 7) ? v->digit[r] : 0;
        n += snprintf(line + n, sizeof(line) - n, "%02x", bits);
      }
    }
  }
  if (strcmp(line, mx.last) != 0) {
    strcpy(mx.last, line);
    emit("MAX %llu%s", (unsigned long long)avr_cycles_to_usec(avr, max_changed_at), line);
  }
  return 0;
}

static void max_latch(void) {
  mx.latches++;
  if (mx.bits % 16 != 0) mx.bad_latches++;   /* a partial word: count it, apply anyway */
  for (int d = 0; d < mx.count; d++) {
    /* device 0 (first in the chain) holds the newest 16 bits */
    uint16_t w = (uint16_t)(mx.shift >> (16 * d));
    uint8_t reg = (w >> 8) & 0x0F, val = w & 0xFF;
    max_dev_t *v = &mx.dev[d];
    switch (reg) {
      case 0x0: break;                                   /* no-op */
      case 0x9: v->decode = val; break;
      case 0xA: v->intensity = val & 0x0F; break;
      case 0xB: v->scan_limit = val & 7; break;
      case 0xC: v->shutdown = !(val & 1); break;
      case 0xF: v->test = val & 1; break;
      default:
        if (reg >= 1 && reg <= 8) v->digit[reg - 1] = val;
    }
  }
  mx.bits = 0;
  max_changed_at = avr->cycle;
  avr_cycle_timer_cancel(avr, max_show, NULL);
  avr_cycle_timer_register_usec(avr, MAX_SETTLE_US, max_show, NULL);
}

static void max_pin(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  int which = (int)(intptr_t)param;
  value = value ? 1 : 0;
  if (which == 0) {
    mx.din_v = value;
  } else if (which == 1) {
    if (value && !mx.clk_v && !mx.cs_v) {    /* rising CLK while selected: shift DIN in */
      mx.shift = (mx.shift << 1) | (uint64_t)mx.din_v;
      mx.bits++;
    }
    mx.clk_v = value;
  } else {
    if (value && !mx.cs_v) max_latch();      /* rising LOAD: every device latches */
    if (!value && mx.cs_v) mx.bits = 0;
    mx.cs_v = value;
  }
}

/* ---- WS2812 decoder -------------------------------------------------------------------------- */
static struct {
  int enabled;
  pin_t pin;
  int level;
  avr_cycle_count_t rise;
  uint8_t bytes[RING_MAX_BYTES];
  int nbits;
  uint8_t shown[RING_MAX_BYTES];
  int nshown;
  unsigned long latches;
} ws = {.enabled = 1, .pin = {'D', 6}};

static avr_cycle_count_t ws_latch(struct avr_t *a, avr_cycle_count_t when, void *param) {
  (void)a;
  (void)param;
  int n = ws.nbits / 8;
  ws.nbits = 0;
  if (n == 0) return 0;
  ws.latches++;
  if (n != ws.nshown || memcmp(ws.bytes, ws.shown, n) != 0) {
    memcpy(ws.shown, ws.bytes, n);
    ws.nshown = n;
    char *hex = malloc(2 * n + 1);
    for (int i = 0; i < n; i++) sprintf(hex + 2 * i, "%02x", ws.bytes[i]);
    emit("RING %llu %d %s", (unsigned long long)avr_cycles_to_usec(avr, when), n / 3, hex);
    free(hex);
  }
  return 0;
}

static void ws_pin(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  value = value ? 1 : 0;
  if (value == (uint32_t)ws.level) return;
  ws.level = value;
  if (value) {
    ws.rise = avr->cycle;
    avr_cycle_timer_cancel(avr, ws_latch, NULL);
  } else {
    /* a high pulse ended: > 0.6 us is a 1 (0.35-0.4 us is a 0) */
    avr_cycle_count_t width = avr->cycle - ws.rise;
    int bit = width > (avr_cycle_count_t)avr_usec_to_cycles(avr, 1) * 6 / 10;
    int i = ws.nbits / 8;
    if (i < RING_MAX_BYTES) {
      if (ws.nbits % 8 == 0) ws.bytes[i] = 0;
      ws.bytes[i] |= bit << (7 - ws.nbits % 8);
      ws.nbits++;
    }
    /* low for 50 us: the pixels latch what they got */
    avr_cycle_timer_register_usec(avr, 50, ws_latch, NULL);
  }
}

/* ---- UART bridge ------------------------------------------------------------------------------ */
static struct {
  uint8_t rxq[RXQ_SIZE];        /* host -> MCU, waiting for their time on the wire */
  size_t rx_head, rx_len;
  uint8_t txq[TXQ_SIZE];        /* MCU -> host */
  size_t tx_len;
  int master;                   /* pty master, -1 when unplugged */
  char slave[128];
  int host_open;
  unsigned long long rx_bytes, tx_bytes, overruns, lost_rx_off, tx_dropped;
} br = {.master = -1};

static avr_irq_t *uart_in;

static avr_cycle_count_t uart_feed(struct avr_t *a, avr_cycle_count_t when, void *param) {
  (void)param;
  if (br.rx_len) {
    uint8_t b = br.rxq[br.rx_head];
    br.rx_head = (br.rx_head + 1) % RXQ_SIZE;
    br.rx_len--;
    if (!avr_regbit_get(a, uart0->rxen)) {
      br.lost_rx_off++;                                   /* the UART is not listening */
    } else if (uart_fifo_get_read_size(&uart0->input) >= UART_HW_DEPTH) {
      br.overruns++;                                      /* data overrun: byte lost */
    } else {
      avr_raise_irq(uart_in, b);
      br.rx_bytes++;
    }
  }
  /* one byte per frame time at the baud rate the firmware set */
  avr_cycle_count_t cpb = uart0->cycles_per_byte ? uart0->cycles_per_byte : 1;
  return when + cpb;
}

static void uart_out(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  if (br.master < 0 || !br.host_open) {
    br.tx_dropped++;                                      /* nobody listening: gone */
    return;
  }
  if (br.tx_len < TXQ_SIZE) br.txq[br.tx_len++] = (uint8_t)value;
  else br.tx_dropped++;
  br.tx_bytes++;
}

/* ---- the board ------------------------------------------------------------------------------- */
static avr_cycle_count_t run_until;     /* boot delay: the MCU is held until this cycle */
static int halted;

static void adc_noise(void) {
  avr_irq_t *adc = avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0);
  if (!adc) return;
  avr_raise_irq(adc + 0, (uint32_t)(rand() % 5000));
  avr_raise_irq(adc + 1, (uint32_t)(rand() % 5000));
}

static void mcu_reset(const char *why) {
  /* what was pending shows now: a reset drops simavr's cycle timers */
  if (mx.enabled) max_show(avr, 0, NULL);
  if (ws.enabled && ws.nbits) ws_latch(avr, avr->cycle, NULL);
  avr_reset(avr);                        /* also drops every cycle timer */
  halted = 0;
  br.lost_rx_off += br.rx_len;           /* bytes in flight while resetting are lost */
  br.rx_len = 0;
  ws.nbits = 0;
  ws.level = 0;
  mx.bits = 0;
  adc_noise();
  avr_cycle_timer_register(avr, 1, uart_feed, NULL);
  run_until = avr->cycle + avr_usec_to_cycles(avr, (uint32_t)boot_ms * 1000);
  emit("RESET %llu %s", sim_us(), why);
}

static int pty_open(void) {
  int master, slave;
  char name[128];
  if (openpty(&master, &slave, name, NULL, NULL) < 0) return -1;
  struct termios t;
  if (tcgetattr(slave, &t) == 0) {
    cfmakeraw(&t);
    cfsetspeed(&t, B115200);
    tcsetattr(slave, TCSANOW, &t);
  }
  /* Close our side of the slave: POLLHUP on the master then tells us whether the host
   * has the port open (DTR on a real board). The termios settings stay with the pty. */
  close(slave);
  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  fcntl(master, F_SETFD, FD_CLOEXEC);
  br.master = master;
  snprintf(br.slave, sizeof(br.slave), "%s", name);
  br.host_open = 0;
  br.rx_len = br.tx_len = 0;
  if (link_path) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp%d", link_path, (int)getpid());
    unlink(tmp);
    if (symlink(name, tmp) < 0 || rename(tmp, link_path) < 0) {
      fprintf(stderr, "eyes_sim: cannot link %s -> %s: %s\n", link_path, name, strerror(errno));
      return -1;
    }
  }
  return 0;
}

static void pty_close(void) {
  if (link_path) unlink(link_path);
  if (br.master >= 0) close(br.master);
  br.master = -1;
  br.host_open = 0;
  br.rx_len = br.tx_len = 0;
}

static void do_unplug(void) {
  if (br.master < 0) return;
  pty_close();
  emit("UNPLUGGED %llu", sim_us());
}

static void do_plug(void) {
  if (br.master >= 0) return;
  if (pty_open() < 0) {
    emit("ERROR cannot open a pty");
    return;
  }
  max_power_on();                        /* power-on: the chips come up blank, shut down */
  ws.nshown = -1;
  mcu_reset("power");
  emit("PLUGGED %llu %s", sim_us(), br.slave);
}

/* ---- watched variables --------------------------------------------------------------------- */
static struct { const char *name; uint32_t addr; int size, words; } watch[MAX_WATCH];
static int nwatch;

static void resolve_watch(elf_firmware_t *fw, const char *spec) {
  if (nwatch >= MAX_WATCH) return;
  char name[128];
  int size = 2, words = 0;
  snprintf(name, sizeof(name), "%s", spec);
  char *colon = strchr(name, ':');
  if (colon) {
    *colon = 0;
    if (strchr(colon + 1, 'x')) words = atoi(colon + 1);
    else size = atoi(colon + 1);
  }
  for (uint32_t i = 0; i < fw->symbolcount; i++) {
    if (strcmp(fw->symbol[i]->symbol, name) == 0 && fw->symbol[i]->addr >= 0x800000) {
      watch[nwatch].name = strdup(name);
      watch[nwatch].addr = fw->symbol[i]->addr - 0x800000;
      watch[nwatch].size = size;
      watch[nwatch].words = words;
      nwatch++;
      return;
    }
  }
  fprintf(stderr, "eyes_sim: no RAM symbol %s in the firmware\n", name);
}

static void print_stats(double lag_max_ms, double lag_ms, unsigned long catchups) {
  char line[2048];
  int n = snprintf(line, sizeof(line),
                   "STATS us=%llu rx_bytes=%llu tx_bytes=%llu overruns=%llu lost_rx_off=%llu "
                   "tx_dropped=%llu rx_queued=%zu max_latches=%lu max_bad_latches=%lu "
                   "ring_latches=%lu lag_ms=%.1f lag_max_ms=%.1f catchups=%lu host_open=%d "
                   "plugged=%d halted=%d",
                   sim_us(), br.rx_bytes, br.tx_bytes, br.overruns, br.lost_rx_off,
                   br.tx_dropped, br.rx_len, mx.latches, mx.bad_latches, ws.latches, lag_ms,
                   lag_max_ms, catchups, br.host_open, br.master >= 0, halted);
  for (int w = 0; w < nwatch && n < (int)sizeof(line) - 64; w++) {
    if (watch[w].words) {
      for (int k = 0; k < watch[w].words; k++) {
        uint32_t a = watch[w].addr + 2 * k;
        n += snprintf(line + n, sizeof(line) - n, " %s.%d=%u", watch[w].name, k,
                      avr->data[a] | (avr->data[a + 1] << 8));
      }
    } else {
      uint32_t v = 0;
      for (int k = watch[w].size - 1; k >= 0; k--) v = (v << 8) | avr->data[watch[w].addr + k];
      n += snprintf(line + n, sizeof(line) - n, " %s=%u", watch[w].name, v);
    }
  }
  emit("%s", line);
}

/* ---- main ------------------------------------------------------------------------------------- */
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void no_sleep(avr_t *a, avr_cycle_count_t how_long) {
  (void)a;
  (void)how_long;   /* we pace the simulation ourselves (simavr's own would usleep) */
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void hook_pin(pin_t p, avr_irq_notify_t fn, intptr_t which) {
  avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(p.port), p.bit);
  if (!irq) {
    fprintf(stderr, "eyes_sim: no pin P%c%d on this MCU\n", p.port, p.bit);
    exit(2);
  }
  avr_irq_register_notify(irq, fn, (void *)which);
}

static void usage(void) {
  fprintf(stderr, "usage: eyes_sim [--link PATH] [--max DIN,CLK,CS|none] [--max-count N] "
                  "[--ring PIN|none] [--speed X] [--reset-on-open] [--boot-ms N] "
                  "[--watch SYM[:N]] firmware.elf\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *elf = NULL;
  const char *watches[MAX_WATCH];
  int nwatches = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--link") && v) link_path = argv[++i];
    else if (!strcmp(a, "--max") && v) {
      i++;
      if (!strcmp(v, "none")) mx.enabled = 0;
      else {
        char buf[64], *save = NULL;
        snprintf(buf, sizeof(buf), "%s", v);
        char *p0 = strtok_r(buf, ",", &save), *p1 = strtok_r(NULL, ",", &save),
             *p2 = strtok_r(NULL, ",", &save);
        if (!p0 || !p1 || !p2 || parse_pin(p0, &mx.din) || parse_pin(p1, &mx.clk) ||
            parse_pin(p2, &mx.cs))
          usage();
      }
    } else if (!strcmp(a, "--max-count") && v) {
      mx.count = atoi(argv[++i]);
      if (mx.count < 1 || mx.count > 4) usage();   /* 64-bit shift register */
    } else if (!strcmp(a, "--ring") && v) {
      i++;
      if (!strcmp(v, "none")) ws.enabled = 0;
      else if (parse_pin(v, &ws.pin)) usage();
    } else if (!strcmp(a, "--speed") && v) speed = atof(argv[++i]);
    else if (!strcmp(a, "--reset-on-open")) reset_on_open = 1;
    else if (!strcmp(a, "--boot-ms") && v) boot_ms = atoi(argv[++i]);
    else if (!strcmp(a, "--watch") && v) {
      if (nwatches < MAX_WATCH) watches[nwatches++] = argv[++i];
      else i++;
    } else if (a[0] == '-') usage();
    else elf = a;
  }
  if (!elf) usage();

  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  srand((unsigned)now_ns());

  static elf_firmware_t fw;
  if (elf_read_firmware(elf, &fw) != 0) {
    fprintf(stderr, "eyes_sim: cannot read %s\n", elf);
    return 2;
  }
  if (!fw.mmcu[0]) snprintf(fw.mmcu, sizeof(fw.mmcu), "atmega328p");
  if (!fw.frequency) fw.frequency = 16000000;
  avr = avr_make_mcu_by_name(fw.mmcu);
  if (!avr) {
    fprintf(stderr, "eyes_sim: unknown MCU %s\n", fw.mmcu);
    return 2;
  }
  avr_init(avr);
  avr->log = LOG_ERROR;
  avr_load_firmware(avr, &fw);
  avr->frequency = fw.frequency;
  avr->sleep = no_sleep;
  for (int w = 0; w < nwatches; w++) resolve_watch(&fw, watches[w]);

  /* UART0: no stdio echo, no usleep while the firmware polls the status register */
  uint32_t flags = 0;
  avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
  for (avr_io_t *io = avr->io_port; io; io = io->next)
    if (!strcmp(io->kind, "uart") && ((avr_uart_t *)io)->name == '0') uart0 = (avr_uart_t *)io;
  if (!uart0) {
    fprintf(stderr, "eyes_sim: no UART0\n");
    return 2;
  }
  uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
  avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                          uart_out, NULL);
  if (mx.enabled) {
    hook_pin(mx.din, max_pin, 0);
    hook_pin(mx.clk, max_pin, 1);
    hook_pin(mx.cs, max_pin, 2);
    mx.cs_v = 1;
  }
  if (ws.enabled) hook_pin(ws.pin, ws_pin, 0);

  do_plug();
  emit("READY %s %s", br.slave, link_path ? link_path : "-");

  uint64_t anchor_ns = now_ns();
  avr_cycle_count_t anchor_cycle = avr->cycle;
  double lag_ms = 0, lag_max_ms = 0;
  unsigned long catchups = 0;
  char cmd[256];
  size_t cmd_len = 0;
  int stdin_open = 1;

  while (!g_stop) {
    /* 1. simulate a slice */
    if (br.master >= 0 && !halted) {
      avr_cycle_count_t end = avr->cycle + avr_usec_to_cycles(avr, CHUNK_US);
      while (avr->cycle < end) {
        if (avr->cycle < run_until) {          /* held in the bootloader's wait */
          avr_cycle_count_t skip = run_until < end ? run_until : end;
          avr->cycle = skip;
          br.lost_rx_off += br.rx_len;         /* nobody listens to the UART yet */
          br.rx_len = 0;
          continue;
        }
        int state = avr_run(avr);
        if (state == cpu_Done || state == cpu_Crashed) {
          halted = 1;
          emit("CRASH %llu %s", sim_us(), state == cpu_Done ? "done" : "crashed");
          break;
        }
      }
    } else {
      /* unplugged (no power) or halted: time still passes */
      avr->cycle += avr_usec_to_cycles(avr, CHUNK_US);
    }

    /* 2. keep pace with the wall clock */
    int timeout_us = 0;
    if (speed > 0) {
      uint64_t now = now_ns();
      double sim_ns = (double)(avr->cycle - anchor_cycle) * 1e9 / avr->frequency / speed;
      double wall_ns = (double)(now - anchor_ns);
      if (sim_ns > wall_ns) {
        timeout_us = (int)((sim_ns - wall_ns) / 1000);
        lag_ms = 0;
      } else {
        lag_ms = (wall_ns - sim_ns) / 1e6;
        if (lag_ms > lag_max_ms) lag_max_ms = lag_ms;
        if (lag_ms * 1000 > MAX_LAG_US) {    /* a busy machine: give up the lost time */
          anchor_ns = now;
          anchor_cycle = avr->cycle;
          catchups++;
        }
      }
    }

    /* 3. the world: stdin commands, the pty. The master reports POLLHUP while nobody
     * has the slave open: that is how we see the host open / close the port. */
    int host_was_open = br.host_open;
    if (br.master >= 0) {
      struct pollfd p = {.fd = br.master, .events = 0};
      poll(&p, 1, 0);
      br.host_open = !(p.revents & POLLHUP);
      if (!br.host_open) br.tx_len = 0;
      if (br.host_open != host_was_open) {
        emit("HOST %llu %s", sim_us(), br.host_open ? "open" : "closed");
        if (br.host_open && reset_on_open) mcu_reset("open");
      }
    }
    struct pollfd fds[2];
    int nfds = 0, master_ix = -1, stdin_ix = -1;
    if (stdin_open) {
      fds[nfds] = (struct pollfd){.fd = 0, .events = POLLIN};
      stdin_ix = nfds++;
    }
    if (br.master >= 0 && br.host_open) {
      short ev = 0;
      if (br.rx_len < RXQ_SIZE) ev |= POLLIN;
      if (br.tx_len) ev |= POLLOUT;
      fds[nfds] = (struct pollfd){.fd = br.master, .events = ev};
      master_ix = nfds++;
    }
    struct timespec ts = {.tv_sec = timeout_us / 1000000,
                          .tv_nsec = (timeout_us % 1000000) * 1000L};
    int r = ppoll(fds, nfds, &ts, NULL);
    if (r < 0 && errno != EINTR) break;
    if (master_ix >= 0 && r > 0) {
      short re = fds[master_ix].revents;
      if (re & POLLIN) {
        uint8_t buf[4096];
        size_t room = RXQ_SIZE - br.rx_len;
        ssize_t n = read(br.master, buf, room < sizeof(buf) ? room : sizeof(buf));
        for (ssize_t k = 0; k < n; k++) {
          br.rxq[(br.rx_head + br.rx_len) % RXQ_SIZE] = buf[k];
          br.rx_len++;
        }
      }
    }
    if (br.master >= 0 && br.host_open && br.tx_len) {
      ssize_t n = write(br.master, br.txq, br.tx_len);
      if (n > 0) {
        memmove(br.txq, br.txq + n, br.tx_len - n);
        br.tx_len -= n;
      }
    }
    if (stdin_ix >= 0 && r > 0 && (fds[stdin_ix].revents & (POLLIN | POLLHUP))) {
      char buf[256];
      ssize_t n = read(0, buf, sizeof(buf));
      if (n <= 0) {
        stdin_open = 0;
        g_stop = 1;                            /* EOF: our parent is gone */
      }
      for (ssize_t k = 0; k < n; k++) {
        if (buf[k] != '\n') {
          if (cmd_len < sizeof(cmd) - 1) cmd[cmd_len++] = buf[k];
          continue;
        }
        cmd[cmd_len] = 0;
        cmd_len = 0;
        if (!strcmp(cmd, "reset")) {
          if (br.master >= 0) mcu_reset("command");
        } else if (!strcmp(cmd, "unplug")) do_unplug();
        else if (!strcmp(cmd, "plug")) do_plug();
        else if (!strcmp(cmd, "stats")) print_stats(lag_max_ms, lag_ms, catchups);
        else if (!strcmp(cmd, "quit")) g_stop = 1;
        else if (cmd[0]) emit("ERROR unknown command %s", cmd);
      }
    }
  }
  pty_close();
  emit("BYE");
  return 0;
}
