package livehub

// Tag filters (docs/protocol.md, "Tags and filters"): an expression over a
// publication's tags that a subscription (or a history request) carries, so
// that the server sends only the publications it lets through.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Filter is an expression over a publication's tags, made with Eq, Neq,
// StartsWith, Gt, Gte, Lt, Lte, In, NotIn, Exists, NotExists, And, Or and
// Not (or RawFilter), and marshalled to the protocol's JSON:
//
//	And(Eq("lang", "en"), Or(Gte("prio", 3), In("to", "ada", "all")))
//	→ {"and":[{"key":"lang","op":"eq","value":"en"},
//	          {"or":[{"key":"prio","op":"gte","value":3},
//	                 {"key":"to","op":"in","values":["ada","all"]}]}]}
//
// A publication without the key matches only Neq, NotIn and NotExists. The
// server allows at most 32 nodes and 8 levels, And and Or of at least one
// filter, and refuses anything else with code bad_command; this package
// checks nothing more than it must to write the JSON.
//
// The zero Filter is no filter. A Filter is immutable and may be shared.
type Filter struct {
	n *filterNode
}

// filterNode is one node: a comparison (key, op, and value or values), a
// combination (op "and", "or" or "not" over subs), or raw JSON.
type filterNode struct {
	op     string
	key    string
	value  interface{} // string or float64; nil where the op takes none
	values []string    // in, nin
	subs   []Filter    // and, or, not
	raw    json.RawMessage
}

func compare(key, op string, value interface{}) Filter {
	return Filter{&filterNode{op: op, key: key, value: value}}
}

// Eq matches a publication whose tag key is value.
func Eq(key, value string) Filter { return compare(key, "eq", value) }

// Neq matches a publication whose tag key is not value, or that has no tag
// key.
func Neq(key, value string) Filter { return compare(key, "neq", value) }

// StartsWith matches a publication whose tag key starts with prefix (the
// protocol's op "starts").
func StartsWith(key, prefix string) Filter { return compare(key, "starts", prefix) }

// Gt matches a publication whose tag key, read as a number, is greater than
// value (a tag that is not a number does not match).
func Gt(key string, value float64) Filter { return compare(key, "gt", value) }

// Gte is Gt with greater than or equal to.
func Gte(key string, value float64) Filter { return compare(key, "gte", value) }

// Lt matches a publication whose tag key, read as a number, is less than
// value (a tag that is not a number does not match).
func Lt(key string, value float64) Filter { return compare(key, "lt", value) }

// Lte is Lt with less than or equal to.
func Lte(key string, value float64) Filter { return compare(key, "lte", value) }

func member(key, op string, values []string) Filter {
	return Filter{&filterNode{op: op, key: key, values: append(make([]string, 0, len(values)), values...)}}
}

// In matches a publication whose tag key is one of values.
func In(key string, values ...string) Filter { return member(key, "in", values) }

// NotIn matches a publication whose tag key is none of values, or that has
// no tag key (the protocol's op "nin").
func NotIn(key string, values ...string) Filter { return member(key, "nin", values) }

// Exists matches a publication that has the tag key.
func Exists(key string) Filter { return Filter{&filterNode{op: "exists", key: key}} }

// NotExists matches a publication that has no tag key (op "nexists").
func NotExists(key string) Filter { return Filter{&filterNode{op: "nexists", key: key}} }

func combine(op string, filters []Filter) Filter {
	return Filter{&filterNode{op: op, subs: append(make([]Filter, 0, len(filters)), filters...)}}
}

// And matches a publication that every filter matches.
func And(filters ...Filter) Filter { return combine("and", filters) }

// Or matches a publication that any of filters matches.
func Or(filters ...Filter) Filter { return combine("or", filters) }

// Not matches a publication that f does not match.
func Not(f Filter) Filter { return combine("not", []Filter{f}) }

// RawFilter is a filter written as the protocol's JSON already (e.g. one
// kept in a configuration file); it is sent as it is, once checked to be
// JSON. An empty expr, or null, is no filter.
func RawFilter(expr json.RawMessage) Filter {
	if t := bytes.TrimSpace(expr); len(t) == 0 || string(t) == "null" {
		return Filter{}
	}
	return Filter{&filterNode{raw: append(json.RawMessage(nil), expr...)}}
}

// IsZero reports whether f is no filter.
func (f Filter) IsZero() bool { return f.n == nil }

var errZeroInFilter = errors.New("livehub: a zero Filter inside And, Or or Not")

// MarshalJSON writes the protocol's JSON of f; the zero Filter is null.
func (f Filter) MarshalJSON() ([]byte, error) {
	n := f.n
	if n == nil {
		return []byte("null"), nil
	}
	for _, sub := range n.subs {
		if sub.IsZero() {
			return nil, errZeroInFilter
		}
	}
	switch n.op {
	case "":
		var buf bytes.Buffer
		if err := json.Compact(&buf, n.raw); err != nil {
			return nil, fmt.Errorf("livehub: RawFilter: %w", err)
		}
		return buf.Bytes(), nil
	case "and":
		return encodeJSON(struct {
			And []Filter `json:"and"`
		}{n.subs})
	case "or":
		return encodeJSON(struct {
			Or []Filter `json:"or"`
		}{n.subs})
	case "not":
		return encodeJSON(struct {
			Not Filter `json:"not"`
		}{n.subs[0]})
	case "in", "nin":
		return encodeJSON(struct {
			Key    string   `json:"key"`
			Op     string   `json:"op"`
			Values []string `json:"values"`
		}{n.key, n.op, n.values})
	case "exists", "nexists":
		return encodeJSON(struct {
			Key string `json:"key"`
			Op  string `json:"op"`
		}{n.key, n.op})
	}
	return encodeJSON(struct {
		Key   string      `json:"key"`
		Op    string      `json:"op"`
		Value interface{} `json:"value"`
	}{n.key, n.op, n.value})
}

// String returns f's JSON, for logs and error messages.
func (f Filter) String() string {
	b, err := f.MarshalJSON()
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}
