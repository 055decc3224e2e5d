package config

// KeyError is a configuration problem tied to one key. Its message is one
// line that starts with the key's full path.
type KeyError struct {
	Key     string // e.g. "pools[0].max"
	Problem string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Problem }

func keyErr(key, problem string) error { return &KeyError{Key: key, Problem: problem} }
