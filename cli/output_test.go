package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestQueryKeyOrder(t *testing.T) {
	tests := []struct {
		query string
		want  []string
	}{
		{"[].{Name:name, Loc:location}", []string{"Name", "Loc"}},
		{"{z:a, b:c, m:d}", []string{"z", "b", "m"}},
		{"[?x=='1'].{Z:a, A:b} | [0]", []string{"Z", "A"}},
		{"sort_by([], &name)[].{B:b, A:a}", []string{"B", "A"}},
		{`[].{"quoted key": a, x: b}`, []string{"quoted key", "x"}},
		{"value[*].{Y:properties.{inner:a}, X:b}", []string{"Y", "X"}},
		{"{Outer: items[].{Inner: a}}", []string{"Outer"}},
		{"name", nil},
		{"[].name", nil},
	}
	for _, tc := range tests {
		if got := queryKeyOrder(tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("queryKeyOrder(%q) = %q, want %q", tc.query, got, tc.want)
		}
	}
}

func TestTableAutoColumns(t *testing.T) {
	data := mustJSON(t, `[
		{"name": "b", "id": "/x", "type": "t", "etag": "e", "location": "westus2", "tags": {"a": "1"}, "zones": [1], "count": 3, "enabled": true, "note": null},
		{"name": "a", "id": "/y", "type": "t", "location": "eastus", "count": 10, "enabled": false}
	]`)
	var b bytes.Buffer
	p := printer{format: "table"}
	if err := p.print(&b, data, nil); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"Count  Enabled  Location  Name\n" +
		"-----  -------  --------  ----\n" +
		"3      True     westus2   b\n" +
		"10     False    eastus    a\n"
	if b.String() != want {
		t.Fatalf("table =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestTableQueryOrderAndScalars(t *testing.T) {
	data := mustJSON(t, `[{"name": "rg1", "location": "westus2", "properties": {"provisioningState": "Succeeded"}}]`)
	tests := []struct {
		query, want string
	}{
		{"[].{Zeta:name, Alpha:location, State:properties.provisioningState}",
			"Zeta  Alpha    State\n----  -------  ---------\nrg1   westus2  Succeeded\n"},
		{"[0].{L:location, N:name}", "L        N\n-------  ---\nwestus2  rg1\n"},
		{"[].name", "Result\n------\nrg1\n"},
		{"length(@)", "Result\n------\n1\n"},
		{"[].[name, location]", "Column1  Column2\n-------  -------\nrg1      westus2\n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		p := printer{format: "table", query: tc.query}
		if err := p.print(&b, data, groupTable); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("--query %q -o table =\n%s\nwant\n%s", tc.query, b.String(), tc.want)
		}
	}
}

func TestTableTransformer(t *testing.T) {
	data := mustJSON(t, `[{"name": "rg1", "location": "westus2", "properties": {"provisioningState": "Succeeded"}}]`)
	var b bytes.Buffer
	if err := (&printer{format: "table"}).print(&b, data, groupTable); err != nil {
		t.Fatal(err)
	}
	want := "Name  Location  Status\n----  --------  ---------\nrg1   westus2   Succeeded\n"
	if b.String() != want {
		t.Fatalf("table =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := (&printer{format: "table"}).print(&b, []any{}, groupTable); err != nil {
		t.Fatal(err)
	}
	if b.String() != "" {
		t.Fatalf("empty list table = %q, want nothing", b.String())
	}
}

func TestTSV(t *testing.T) {
	data := mustJSON(t, `[
		{"b": "x", "a": 1.5, "nested": {"k": "v"}, "list": [1, 2, 3], "flag": true, "none": null},
		{"b": "y\tz", "a": 2, "nested": {}, "list": [], "flag": false, "none": null}
	]`)
	tests := []struct {
		query, want string
	}{
		{"", "1.5\tx\tTrue\t3\t\tNone\n2\ty z\tFalse\t0\t\tNone\n"},
		{"[].{B:b, A:a}", "x\t1.5\ny z\t2\n"},
		{"[0].b", "x\n"},
		{"[].b", "x\ny z\n"},
		{"[0].flag", "True\n"},
		{"[?b=='nothing']", ""},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if err := (&printer{format: "tsv", query: tc.query}).print(&b, data, nil); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("--query %q -o tsv = %q, want %q", tc.query, b.String(), tc.want)
		}
	}
}

func TestJSONOutput(t *testing.T) {
	data := mustJSON(t, `{"z": 1, "a": {"y": [true, null, "<&>"], "b": []}, "n": 12345678901}`)
	want := `{
  "a": {
    "b": [],
    "y": [
      true,
      null,
      "<&>"
    ]
  },
  "n": 12345678901,
  "z": 1
}
`
	var b bytes.Buffer
	if err := (&printer{format: "json"}).print(&b, data, nil); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Fatalf("json =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := (&printer{format: "jsonc", color: true}).print(&b, data, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), colorKey+`"a"`+colorReset) || !strings.Contains(b.String(), colorString+`"<&>"`+colorReset) {
		t.Fatalf("jsonc with colour = %q", b.String())
	}
	b.Reset()
	if err := (&printer{format: "jsonc"}).print(&b, data, nil); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Fatalf("jsonc without a terminal = %q, want plain json", b.String())
	}
	b.Reset()
	if err := (&printer{format: "none"}).print(&b, data, nil); err != nil || b.Len() != 0 {
		t.Fatalf("-o none printed %q (err %v)", b.String(), err)
	}
}

func TestCheckQuery(t *testing.T) {
	if err := checkQuery("[].{a:b}"); err != nil {
		t.Fatalf("checkQuery(valid) = %v", err)
	}
	if err := checkQuery("[."); err == nil || !strings.HasPrefix(err.Error(), "argument --query:") {
		t.Fatalf("checkQuery([.) = %v, want an argument --query error", err)
	}
}

func TestDecodeError(t *testing.T) {
	req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: "management.localhost", Path: "/x"}}
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   string
	}{
		{"ARM", 404, nil, `{"error":{"code":"ResourceGroupNotFound","message":"Resource group 'x' could not be found."}}`, "(ResourceGroupNotFound) Resource group 'x' could not be found."},
		{"OAuth", 401, nil, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret."}`, "(invalid_client) AADSTS7000215: Invalid client secret."},
		{"HeaderOnly", 409, http.Header{"X-Ms-Error-Code": {"Conflict"}}, ``, "(Conflict) GET https://management.localhost/x answered 409 Conflict."},
		{"NotJSON", 502, nil, `bad gateway`, "(BadGateway) GET https://management.localhost/x answered 502 Bad Gateway."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			resp := &http.Response{StatusCode: tc.status, Status: strconv.Itoa(tc.status) + " " + http.StatusText(tc.status), Header: h, Request: req, Body: io.NopCloser(strings.NewReader(""))}
			if got := decodeError(resp, []byte(tc.body)).Error(); got != tc.want {
				t.Fatalf("decodeError = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"plain":       "'plain'",
		"it's":        `'it'\''s'`,
		"$HOME `x` !": "'$HOME `x` !'",
		"":            "''",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
