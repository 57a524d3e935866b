package livehub

// RFC 6455 framing, client side: every frame this side writes is masked
// with a fresh random key, and every frame it reads must not be; control
// frames may come between the fragments of a message; a message is handed
// on only once whole, and only if it fits the size limit (checked before a
// fragment is read into memory) and, for text, is valid UTF-8.

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"
)

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is the largest payload of a control frame (RFC 6455 5.5).
const maxControlPayload = 125

// appendFrame appends one complete client frame (FIN set, masked with key)
// carrying payload to dst.
func appendFrame(dst []byte, op byte, payload []byte, key [4]byte) []byte {
	dst = append(dst, 0x80|op)
	n := len(payload)
	switch {
	case n <= 125:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	maskBytes(dst[start:], key)
	return dst
}

// maskBytes XORs b with the repeating key (masking and unmasking alike).
func maskBytes(b []byte, key [4]byte) {
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// newMaskKey returns an unpredictable masking key, as RFC 6455 5.3 requires
// (so that a client's payload cannot be chosen to look like something else
// to a proxy on the way).
func newMaskKey() ([4]byte, error) {
	var key [4]byte
	_, err := rand.Read(key[:])
	return key, err
}

// closePayload is the payload of a close frame with code and reason
// (CloseNoStatus: an empty payload, as that code must not be sent).
func closePayload(code int, reason string) []byte {
	if code == CloseNoStatus || code == 0 {
		return nil
	}
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	return append(b, reason...)
}

// protocolError is a violation by the server; the client closes the
// connection with code.
type protocolError struct {
	code int
	msg  string
}

func (e *protocolError) Error() string { return e.msg }

func violation(format string, args ...interface{}) error {
	return &protocolError{CloseProtocolError, fmt.Sprintf(format, args...)}
}

// frame is one frame as read.
type frame struct {
	fin     bool
	op      byte
	payload []byte
}

// readFrame reads one frame; limit bounds the payload of a data frame (the
// room left in the message being assembled).
func readFrame(r *bufio.Reader, limit int64) (frame, error) {
	var head [2]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: head[0]&0x80 != 0, op: head[0] & 0x0F}
	if head[0]&0x70 != 0 {
		return f, violation("reserved bits set without an extension")
	}
	if head[1]&0x80 != 0 {
		return f, violation("masked frame from the server")
	}
	control := f.op >= opClose
	switch f.op {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return f, violation("unknown opcode %#x", f.op)
	}
	n := uint64(head[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(ext[:])
		if n>>63 != 0 {
			return f, violation("payload length with the most significant bit set")
		}
	}
	if control && (n > maxControlPayload || !f.fin) {
		return f, violation("control frame fragmented or longer than 125 bytes")
	}
	if !control && n > uint64(limit) {
		return f, &protocolError{CloseTooBig, "message larger than the client's MaxMessageSize"}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	return f, nil
}

// readMessage reads frames until a whole data message is in, and returns
// its opcode (text or binary) and payload. Control frames met on the way go
// to control; a close frame ends the read with control's error. before, if
// not nil, runs before each frame is read (to extend a read deadline).
func readMessage(r *bufio.Reader, maxSize int64, before func(), control func(op byte, payload []byte) error) (byte, []byte, error) {
	var (
		op      byte
		message []byte
		started bool
	)
	for {
		if before != nil {
			before()
		}
		f, err := readFrame(r, maxSize-int64(len(message)))
		if err != nil {
			return 0, nil, err
		}
		switch f.op {
		case opClose, opPing, opPong:
			if err := control(f.op, f.payload); err != nil {
				return 0, nil, err
			}
			continue
		case opText, opBinary:
			if started {
				return 0, nil, violation("a new message inside a fragmented one")
			}
			op, message, started = f.op, f.payload, true
		case opContinuation:
			if !started {
				return 0, nil, violation("a continuation frame without a message")
			}
			message = append(message, f.payload...)
		}
		if f.fin {
			if op == opText && !utf8.Valid(message) {
				return 0, nil, &protocolError{CloseInvalidPayload, "text message is not valid UTF-8"}
			}
			return op, message, nil
		}
	}
}

// parseClose reads a close frame's payload: its code (CloseNoStatus when
// empty) and reason, or a protocol error for a malformed one.
func parseClose(payload []byte) (int, string, error) {
	if len(payload) == 0 {
		return CloseNoStatus, "", nil
	}
	if len(payload) == 1 {
		return 0, "", violation("close frame with a 1-byte payload")
	}
	code := int(binary.BigEndian.Uint16(payload))
	reason := payload[2:]
	if !validCloseCode(code) {
		return 0, "", violation("invalid close code %d", code)
	}
	if !utf8.Valid(reason) {
		return 0, "", &protocolError{CloseInvalidPayload, "close reason is not valid UTF-8"}
	}
	return code, string(reason), nil
}

// validCloseCode: the codes a close frame may carry (RFC 6455 7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
