package azcli_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// lookup follows a path like "properties.accessPolicies[0].objectId"
// through decoded JSON; nil when a part is missing.
func lookup(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		name, idx, _ := strings.Cut(part, "[")
		if name != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[name]
		}
		for idx != "" {
			var n string
			n, idx, _ = strings.Cut(idx, "]")
			idx = strings.TrimPrefix(idx, "[")
			i, err := strconv.Atoi(n)
			l, ok := v.([]any)
			if err != nil || !ok || i >= len(l) {
				return nil
			}
			v = l[i]
		}
	}
	return v
}

// str is the string at path, or "".
func str(v any, path string) string {
	s, _ := lookup(v, path).(string)
	return s
}

// eq checks the value at path (numbers are float64).
func eq(v any, path string, want any) error {
	if got := lookup(v, path); !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%s = %#v, want %#v", path, got, want)
	}
	return nil
}

func nonEmpty(v any, path string) error {
	if str(v, path) == "" {
		return fmt.Errorf("%s = %#v, want a non-empty string", path, lookup(v, path))
	}
	return nil
}

func prefixed(v any, path, prefix string) error {
	if s := str(v, path); !strings.HasPrefix(s, prefix) {
		return fmt.Errorf("%s = %q, want it to start with %q", path, s, prefix)
	}
	return nil
}

func stringList(v any, path string) []string {
	l, _ := lookup(v, path).([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// contains checks that the list at path holds want (case-insensitively, as
// Azure compares permission names).
func contains(v any, path, want string) error {
	if !slices.ContainsFunc(stringList(v, path), func(s string) bool { return strings.EqualFold(s, want) }) {
		return fmt.Errorf("%s = %v, want it to contain %q", path, lookup(v, path), want)
	}
	return nil
}

// sameSet checks that the list at path holds exactly want, in any order and
// case.
func sameSet(v any, path string, want ...string) error {
	got := stringList(v, path)
	norm := func(l []string) []string {
		out := make([]string, len(l))
		for i, s := range l {
			out[i] = strings.ToLower(s)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(norm(got), norm(want)) {
		return fmt.Errorf("%s = %v, want %v", path, lookup(v, path), want)
	}
	return nil
}

func all(errs ...error) error { return errors.Join(errs...) }

// eqAny checks an already extracted value named what.
func eqAny(got any, what string, want any) error {
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%s = %#v, want %#v", what, got, want)
	}
	return nil
}
