// Package strictjson decodes JSON the one way every reader of it agrees on.
// encoding/json accepts what other parsers read differently: duplicate keys
// (the last one wins there, the first one elsewhere), field names in any case
// ({"USERID": …} fills UserID), and invalid UTF-8 (silently replaced). When a
// partner's backend, a proxy and the gateway can disagree about whom a request
// is for, the request is refused instead.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"
)

// Unmarshal decodes one JSON object into the struct v points to. It fails,
// naming the field, on a key that is not exactly one of the struct's JSON
// field names, on a key given twice at any depth, on invalid UTF-8, and on
// anything after the object.
func Unmarshal(data []byte, v any) error {
	if !utf8.Valid(data) {
		return errors.New("the body is not UTF-8")
	}
	names, err := fieldNames(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // object keys are always strings
		if !names[key] {
			if alt := caseFold(names, key); alt != "" {
				return fmt.Errorf("unknown field %.64q (did you mean %q? names are case-sensitive)", key, alt)
			}
			return fmt.Errorf("unknown field %.64q", key)
		}
		if seen[key] {
			return fmt.Errorf("field %q given twice", key)
		}
		seen[key] = true
		if err := skipValue(dec, key); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("field %q: want %s, got %s", te.Field, te.Type, te.Value)
		}
		return err
	}
	return nil
}

// skipValue consumes one value, refusing duplicate keys in nested objects.
func skipValue(dec *json.Decoder, field string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("field %q: %w", field, err)
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return fmt.Errorf("field %q: %w", field, err)
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("field %q: key %.64q given twice", field, key)
			}
			seen[key] = true
			if err := skipValue(dec, field+"."+key); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	case json.Delim('['):
		for dec.More() {
			if err := skipValue(dec, field); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	}
	return err
}

// fieldNames lists the JSON names of the struct v points to.
func fieldNames(v any) (map[string]bool, error) {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("strictjson: want a pointer to a struct, got %T", v)
	}
	t = t.Elem()
	names := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names[name] = true
	}
	return names, nil
}

func caseFold(names map[string]bool, key string) string {
	for n := range names {
		if strings.EqualFold(n, key) {
			return n
		}
	}
	return ""
}
