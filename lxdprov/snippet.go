package lxdprov

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// parseSnippet reads a pool's user_data: a cloud-config mapping (its
// "#cloud-config" line is optional). Empty: nil.
func parseSnippet(s string) (*yaml.Node, error) {
	// The header is a YAML comment, which would otherwise travel with the
	// snippet's first key into the middle of the merged document.
	if first, rest, _ := strings.Cut(s, "\n"); strings.TrimSpace(first) == "#cloud-config" {
		s = rest
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("want a cloud-config mapping (keys such as packages, write_files, runcmd)")
	}
	if len(root.Content) == 0 {
		return nil, nil
	}
	return root, nil
}

// mergeCloudConfig merges the pool's snippet into ephemera's cloud-config,
// both mappings:
//   - a key only the snippet has is added;
//   - a list both have is joined: the snippet's items after ephemera's,
//     except runcmd, whose snippet items run before ephemera's (the last of
//     which starts the runner and powers off when it exits);
//   - any other key both have is an error: ephemera's own must stand.
//
// dst is changed in place; src is not.
func mergeCloudConfig(dst, src *yaml.Node) error {
	for i := 0; i+1 < len(src.Content); i += 2 {
		key, val := src.Content[i], src.Content[i+1]
		j := mappingIndex(dst, key.Value)
		if j < 0 {
			dst.Content = append(dst.Content, key, val)
			continue
		}
		mine := dst.Content[j+1]
		if mine.Kind != yaml.SequenceNode || val.Kind != yaml.SequenceNode {
			return fmt.Errorf("user_data key %q: ephemera sets it already; only lists (such as write_files or runcmd) can be merged", key.Value)
		}
		items := make([]*yaml.Node, 0, len(mine.Content)+len(val.Content))
		if key.Value == "runcmd" {
			items = append(append(items, val.Content...), mine.Content...)
		} else {
			items = append(append(items, mine.Content...), val.Content...)
		}
		merged := *mine
		merged.Content = items
		dst.Content[j+1] = &merged
	}
	return nil
}

// mappingIndex returns the index of key's key node in mapping m, or -1.
func mappingIndex(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}
