package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decode walks a YAML node and a Go value together, so that every error —
// an unknown key, a value of the wrong kind — names the full key path
// (webhook.max_body, pools[1].labels[0]) rather than only a line number.
// Fields absent from the YAML keep the value they had (the defaults).
func decode(n *yaml.Node, v reflect.Value, path string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return decode(n.Content[0], v, path)
	case yaml.AliasNode:
		return decode(n.Alias, v, path)
	}
	if n.Tag == "!!null" {
		return nil // "key:" with no value keeps the default
	}
	if nu, ok := v.Addr().Interface().(nodeUnmarshaler); ok {
		return nu.unmarshalNode(n, path)
	}
	if tu, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if n.Kind != yaml.ScalarNode {
			return keyErr(path, "expected a single value")
		}
		if err := tu.UnmarshalText([]byte(n.Value)); err != nil {
			return keyErr(path, err.Error())
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		return decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return keyErr(path, "expected a list")
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return keyErr(path, "expected a single value")
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			return keyErr(path, fmt.Sprintf("expected a whole number, got %q", n.Value))
		}
		v.SetInt(i)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.Tag != "!!bool" {
			return keyErr(path, fmt.Sprintf("expected true or false, got %q", n.Value))
		}
		v.SetBool(b)
	default:
		return keyErr(path, "unsupported type "+v.Type().String())
	}
	return nil
}

// nodeUnmarshaler is a value that reads its own YAML node (a mapping of
// its own shape, such as target_wait's {p95: 5s}); its errors name path.
type nodeUnmarshaler interface {
	unmarshalNode(n *yaml.Node, path string) error
}

func decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return keyErr(path, "expected a mapping of keys to values")
	}
	fields := make(map[string]int, v.NumField())
	for i := 0; i < v.NumField(); i++ {
		tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		kp := join(path, key)
		idx, ok := fields[key]
		if !ok {
			return keyErr(kp, fmt.Sprintf("unknown key (line %d)", n.Content[i].Line))
		}
		if seen[key] {
			return keyErr(kp, fmt.Sprintf("set twice (line %d)", n.Content[i].Line))
		}
		seen[key] = true
		if err := decode(n.Content[i+1], v.Field(idx), kp); err != nil {
			return err
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
