package livehub

import (
	"bufio"
	"bytes"
	"testing"
	"time"
)

func TestRefreshDelayLeavesTimeBeforeExpiry(t *testing.T) {
	for _, tc := range []struct{ remaining, want time.Duration }{
		{time.Hour, 54 * time.Minute},             // 90 %
		{60 * time.Second, 50 * time.Second},      // 10 s before
		{5 * time.Second, minRefreshDelay},        // never sooner than 1 s
		{-time.Minute, minRefreshDelay},           // already due
		{1000 * time.Second, 900 * time.Second},   // 90 %
		{100 * time.Second, 90 * time.Second},     // both rules agree
		{11 * time.Second, minRefreshDelay},       // 1 s before the margin
		{30 * time.Second, 20 * time.Second},      // the margin wins
		{24 * time.Hour, 24 * time.Hour * 9 / 10}, // long tokens
	} {
		if got := refreshDelay(tc.remaining); got != tc.want {
			t.Errorf("refreshDelay(%v) = %v, want %v", tc.remaining, got, tc.want)
		}
	}
}

func TestBackoffGrowsWithJitterAndRespectsCloseCodes(t *testing.T) {
	c := &Client{opts: Options{ReconnectDelay: 100 * time.Millisecond, MaxReconnectDelay: time.Second}}
	setDefaults(&c.opts)
	c.rng = newRand()
	for attempt := 0; attempt < 10; attempt++ {
		full := 100 * time.Millisecond << uint(attempt)
		if full > time.Second {
			full = time.Second
		}
		d := c.backoff(attempt, CloseAbnormal, 1)
		if d > full || d < full/2 {
			t.Errorf("attempt %d: %v, want %v to %v", attempt, d, full/2, full)
		}
	}
	if d := c.backoff(0, CloseTokenExpired, 1); d != 0 {
		t.Errorf("first reconnect after 4002: %v, want at once", d)
	}
	if d := c.backoff(0, CloseTokenExpired, 2); d == 0 {
		t.Error("repeated 4002 reconnects at once")
	}
	if d := c.backoff(0, CloseRateLimited, 1); d < time.Second {
		t.Errorf("after 4029: %v, want at least 1 s", d)
	}
	if d := c.backoff(0, CloseSlowConsumer, 4); d < 400*time.Millisecond {
		t.Errorf("fourth 4008 in a row: %v, want the backoff of attempt 3", d)
	}
}

func TestAppendFrameAndReadFrameAgree(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		payload := bytes.Repeat([]byte{'a'}, n)
		key := [4]byte{0xA, 0xB, 0xC, 0xD}
		wire := appendFrame(nil, opText, payload, key)
		// Unmask as a server would, then read it back as a server frame.
		head := 2
		switch {
		case n > 0xFFFF:
			head += 8
		case n > 125:
			head += 2
		}
		server := append([]byte{}, wire[:head]...)
		server[1] &^= 0x80
		body := append([]byte{}, wire[head+4:]...)
		maskBytes(body, key)
		server = append(server, body...)
		f, err := readFrame(bufio.NewReader(bytes.NewReader(server)), 1<<20)
		if err != nil || !f.fin || f.op != opText || !bytes.Equal(f.payload, payload) {
			t.Errorf("%d bytes: %v fin %v op %d len %d", n, err, f.fin, f.op, len(f.payload))
		}
	}
}

func TestClosePayloadTrimsLongReasonsToValidUTF8(t *testing.T) {
	reason := string(bytes.Repeat([]byte("é"), 100)) // 200 bytes
	p := closePayload(CloseNormal, reason)
	if len(p) > maxControlPayload {
		t.Fatalf("%d bytes", len(p))
	}
	code, got, err := parseClose(p)
	if err != nil || code != CloseNormal || len(got) != 122 {
		t.Errorf("%d %q %v", code, got, err)
	}
	if closePayload(CloseNoStatus, "x") != nil {
		t.Error("1005 must not be sent")
	}
}
