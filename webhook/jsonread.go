package webhook

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// jsonReader reads a JSON document in one pass. It validates every byte
// exactly as encoding/json does (json.Valid accepts the same documents),
// decodes only the values its caller asks for, and skips the rest without
// allocating. encoding/json's Unmarshal validates the whole document and
// then decodes it again by reflection; for an 8 KB workflow_job payload of
// which ephemera keeps a dozen fields that was most of the handler's time.
type jsonReader struct {
	b     []byte
	i     int
	depth int
	// typeErr is the first value of the wrong type; reading goes on, so
	// that a syntax error later in the document still wins, as in
	// encoding/json.
	typeErr string
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

var errSyntax = errors.New("invalid JSON")

func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (r *jsonReader) peek() byte {
	r.ws()
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

// end checks that only white space is left.
func (r *jsonReader) end() error {
	r.ws()
	if r.i != len(r.b) {
		return errSyntax
	}
	return nil
}

// wrongType notes that field holds a value of the wrong type and skips it.
func (r *jsonReader) wrongType(field string) error {
	if r.typeErr == "" {
		r.typeErr = field
	}
	return r.skip()
}

// null consumes a null and reports whether there was one.
func (r *jsonReader) null() (bool, error) {
	if r.peek() != 'n' {
		return false, nil
	}
	return true, r.literal("null")
}

func (r *jsonReader) literal(lit string) error {
	if len(r.b)-r.i < len(lit) || string(r.b[r.i:r.i+len(lit)]) != lit {
		return errSyntax
	}
	r.i += len(lit)
	return nil
}

// skip validates and passes over one value.
func (r *jsonReader) skip() error {
	switch r.peek() {
	case '{':
		return r.object("", func([]byte) error { return r.skip() })
	case '[':
		return r.array("", func() error { return r.skip() })
	case '"':
		_, _, err := r.rawString()
		return err
	case 't':
		return r.literal("true")
	case 'f':
		return r.literal("false")
	case 'n':
		return r.literal("null")
	default:
		_, err := r.number()
		return err
	}
}

// object reads an object, calling member for each key with the reader at
// the key's value; member must consume the value. null is an object without
// members (encoding/json leaves a struct alone for null); another type is a
// wrong type for field.
func (r *jsonReader) object(field string, member func(key []byte) error) error {
	if isNull, err := r.null(); isNull || err != nil {
		return err
	}
	if r.peek() != '{' {
		if c := r.peek(); c == '[' || c == '"' || c == 't' || c == 'f' || c == 'n' || c == '-' || (c >= '0' && c <= '9') {
			return r.wrongType(field)
		}
		return errSyntax
	}
	r.i++
	if r.depth++; r.depth > maxDepth {
		return errSyntax
	}
	if r.peek() == '}' {
		r.i++
		r.depth--
		return nil
	}
	for {
		if r.peek() != '"' {
			return errSyntax
		}
		raw, escaped, err := r.rawString()
		if err != nil {
			return err
		}
		key := raw
		if escaped {
			key = []byte(unescape(raw))
		}
		if r.peek() != ':' {
			return errSyntax
		}
		r.i++
		if err := member(key); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			r.depth--
			return nil
		default:
			return errSyntax
		}
	}
}

// array reads an array, calling elem with the reader at each element.
func (r *jsonReader) array(field string, elem func() error) error {
	if r.peek() != '[' {
		if c := r.peek(); c == '{' || c == '"' || c == 't' || c == 'f' || c == 'n' || c == '-' || (c >= '0' && c <= '9') {
			return r.wrongType(field)
		}
		return errSyntax
	}
	r.i++
	if r.depth++; r.depth > maxDepth {
		return errSyntax
	}
	if r.peek() == ']' {
		r.i++
		r.depth--
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			r.depth--
			return nil
		default:
			return errSyntax
		}
	}
}

// stringStop marks the bytes that end a run of plain string content: the
// closing quote, a backslash and the control characters JSON forbids.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// rawString passes over a string at r.i and returns its content between
// the quotes, and whether it holds escapes.
func (r *jsonReader) rawString() (raw []byte, escaped bool, err error) {
	r.i++ // the opening quote
	start := r.i
	b := r.b
	for {
		i := r.i
		for i < len(b) && !stringStop[b[i]] {
			i++
		}
		r.i = i
		if i >= len(b) {
			return nil, false, errSyntax
		}
		switch b[i] {
		case '"':
			r.i++
			return b[start:i], escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(b) {
				return nil, false, errSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.i += 2
			case 'u':
				if len(b)-i < 6 || !isHex4(b[i+2:i+6]) {
					return nil, false, errSyntax
				}
				r.i += 6
			default:
				return nil, false, errSyntax
			}
		default: // a control character
			return nil, false, errSyntax
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number passes over a number and returns its text.
func (r *jsonReader) number() ([]byte, error) {
	start := r.i
	if r.i < len(r.b) && r.b[r.i] == '-' {
		r.i++
	}
	switch {
	case r.i < len(r.b) && r.b[r.i] == '0':
		r.i++
	case r.i < len(r.b) && '1' <= r.b[r.i] && r.b[r.i] <= '9':
		r.digits()
	default:
		return nil, errSyntax
	}
	if r.i < len(r.b) && r.b[r.i] == '.' {
		r.i++
		if r.digits() == 0 {
			return nil, errSyntax
		}
	}
	if r.i < len(r.b) && (r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		r.i++
		if r.i < len(r.b) && (r.b[r.i] == '+' || r.b[r.i] == '-') {
			r.i++
		}
		if r.digits() == 0 {
			return nil, errSyntax
		}
	}
	return r.b[start:r.i], nil
}

func (r *jsonReader) digits() int {
	n := 0
	for r.i < len(r.b) && '0' <= r.b[r.i] && r.b[r.i] <= '9' {
		r.i++
		n++
	}
	return n
}

// str reads a string into *dst; null leaves *dst as it is.
func (r *jsonReader) str(field string, dst *string) error {
	switch r.peek() {
	case '"':
		raw, escaped, err := r.rawString()
		if err != nil {
			return err
		}
		if escaped || !utf8.Valid(raw) {
			*dst = unescape(raw)
		} else {
			*dst = string(raw)
		}
		return nil
	case 'n':
		return r.literal("null")
	}
	return r.wrongType(field)
}

// int reads an integer into *dst; null leaves *dst as it is.
func (r *jsonReader) int(field string, dst *int64) error {
	c := r.peek()
	switch {
	case c == 'n':
		return r.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		text, err := r.number()
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(text), 10, 64)
		if err != nil {
			if r.typeErr == "" {
				r.typeErr = field
			}
			return nil
		}
		*dst = n
		return nil
	}
	return r.wrongType(field)
}

// time reads an RFC 3339 time into *dst the way time.Time's UnmarshalJSON
// does; null leaves *dst as it is.
func (r *jsonReader) time(field string, dst *time.Time) error {
	switch r.peek() {
	case '"':
		start := r.i
		if _, _, err := r.rawString(); err != nil {
			return err
		}
		if err := dst.UnmarshalJSON(r.b[start:r.i]); err != nil && r.typeErr == "" {
			r.typeErr = field
		}
		return nil
	case 'n':
		return r.literal("null")
	}
	return r.wrongType(field)
}

// strings reads an array of strings into *dst; null sets it to nil.
func (r *jsonReader) strings(field string, dst *[]string) error {
	if isNull, err := r.null(); isNull || err != nil {
		*dst = nil
		return err
	}
	if r.peek() != '[' {
		return r.array(field, nil) // a wrong type, or a syntax error
	}
	out := make([]string, 0, 8)
	err := r.array(field, func() error {
		var s string
		if err := r.str(field, &s); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	*dst = out
	return err
}

// unescape decodes a string with escapes or invalid UTF-8 exactly as
// encoding/json does. It is the slow path: GitHub's ids and labels are
// plain ASCII.
func unescape(raw []byte) string {
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var s string
	_ = json.Unmarshal(quoted, &s) // raw was validated by rawString
	return s
}
