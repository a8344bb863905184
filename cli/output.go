package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/jmespath/go-jmespath"
)

// outputFormats are the values of -o/--output.
var outputFormats = []string{"json", "jsonc", "none", "table", "tsv"}

// printer writes command results the way az does: --query first, then the
// chosen format.
type printer struct {
	format string // one of outputFormats
	query  string // JMESPath; empty for none
	color  bool   // jsonc on a terminal
}

// checkQuery parses a JMESPath expression, as az does before it runs the
// command, so a bad query changes nothing.
func checkQuery(q string) error {
	if q == "" {
		return nil
	}
	if _, err := jmespath.NewParser().Parse(q); err != nil {
		return fmt.Errorf("argument --query: invalid JMESPath query %q: %v", q, err)
	}
	return nil
}

// print writes v. table, if not nil, reshapes v for -o table when no
// --query is given (az's per-command table transformers).
func (p *printer) print(w io.Writer, v any, table func(any) any) error {
	order := []string(nil)
	if p.query != "" {
		res, err := jmespath.Search(p.query, v)
		if err != nil {
			return fmt.Errorf("argument --query: %v", err)
		}
		v = res
		order = queryKeyOrder(p.query)
	}
	bw := bufio.NewWriter(w)
	switch p.format {
	case "none":
		return nil
	case "table":
		if p.query == "" && table != nil {
			v = table(v)
			order = tableOrder(v)
		}
		writeTable(bw, v, order, p.query == "")
	case "tsv":
		writeTSV(bw, v, order)
	case "jsonc":
		writeJSON(bw, v, p.color)
	default:
		writeJSON(bw, v, false)
	}
	return bw.Flush()
}

// row is an ordered object a table transformer builds.
type row struct {
	keys []string
	vals map[string]any
}

func newRow(kv ...any) row {
	r := row{vals: map[string]any{}}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		r.keys = append(r.keys, k)
		r.vals[k] = kv[i+1]
	}
	return r
}

// tableOrder returns the column order of transformed rows.
func tableOrder(v any) []string {
	switch x := v.(type) {
	case row:
		return x.keys
	case []row:
		if len(x) > 0 {
			return x[0].keys
		}
	}
	return nil
}

// queryKeyOrder returns the keys of the multiselect hash that shapes the
// query's result ({Name:name, Loc:location} in "[].{Name:name,
// Loc:location}"), in the order the query writes them, or nil. The parser
// keeps its AST private, so this reads the AST's printed form.
func queryKeyOrder(q string) []string {
	ast, err := jmespath.NewParser().Parse(q)
	if err != nil {
		return nil
	}
	lines := strings.Split(ast.String(), "\n")
	root, _ := parseAST(lines, 0, 0)
	if root == nil {
		return nil
	}
	return root.hashKeys()
}

// astNode is a node read back from jmespath's printed AST.
type astNode struct {
	kind     string
	value    string
	children []*astNode
}

// parseAST reads the node starting at lines[i], printed at indent, and
// returns it with the index of the line after it. The printed form is:
//
//	{indent}ASTKind {
//	{indent+2}value: ...
//	{indent+2}children: {
//	{indent+4}...child nodes...
//	{indent}}
func parseAST(lines []string, i, indent int) (*astNode, int) {
	if i >= len(lines) {
		return nil, i
	}
	head := lines[i]
	if len(head) < indent || !strings.HasSuffix(head, " {") {
		return nil, i + 1
	}
	n := &astNode{kind: strings.TrimSuffix(strings.TrimSpace(head), " {")}
	pad := strings.Repeat(" ", indent)
	i++
	for i < len(lines) {
		l := lines[i]
		switch {
		case l == pad+"}":
			return n, i + 1
		case strings.HasPrefix(l, pad+"  value: "):
			n.value = strings.TrimPrefix(l, pad+"  value: ")
			i++
		case l == pad+"  children: {":
			i++
		case strings.HasPrefix(l, pad+"    ") && strings.HasSuffix(l, " {"):
			var c *astNode
			c, i = parseAST(lines, i, indent+4)
			if c != nil {
				n.children = append(n.children, c)
			}
		default:
			i++
		}
	}
	return n, i
}

// hashKeys returns the keys of the multiselect hash that gives the node's
// result its shape.
func (n *astNode) hashKeys() []string {
	child := func(i int) []string {
		if i >= 0 && i < len(n.children) {
			return n.children[i].hashKeys()
		}
		return nil
	}
	switch n.kind {
	case "ASTMultiSelectHash":
		var keys []string
		for _, c := range n.children {
			if k, err := strconv.Unquote(c.value); err == nil {
				keys = append(keys, k)
			}
		}
		return keys
	case "ASTProjection", "ASTValueProjection", "ASTFilterProjection":
		// children: left, right[, comparator]; the right side shapes each item.
		if k := child(1); k != nil {
			return k
		}
		return child(0)
	case "ASTPipe", "ASTSubexpression", "ASTIndexExpression":
		if k := child(len(n.children) - 1); k != nil {
			return k
		}
		return child(0)
	case "ASTFunctionExpression", "ASTFlatten":
		// sort_by(list, &key), reverse(list), list[]: the first argument.
		return child(0)
	}
	return nil
}

// orderedKeys returns the keys of m: those named in order first, in that
// order, then the rest sorted.
func orderedKeys(m map[string]any, order []string) []string {
	keys := make([]string, 0, len(m))
	for _, k := range order {
		if _, ok := m[k]; ok && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range m {
		if !slices.Contains(keys, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(keys, rest...)
}

// scalarText formats a scalar as az's table and tsv outputs do (Python's
// str): True/False, None, integers without a fraction.
func scalarText(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	case float64:
		if x == float64(int64(x)) && x < 1e15 && x > -1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case json.Number:
		return x.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// tableSkip are the keys az's automatic table leaves out.
var tableSkip = []string{"id", "type", "etag"}

// tableRow picks an item's columns the way az's automatic table does: the
// scalar, non-null top-level fields, named with a capital first letter,
// except id, type and etag. A non-object becomes a single Result column.
func tableRow(item any, order []string, sortKeys bool) ([]string, map[string]string) {
	cols := map[string]string{}
	var names []string
	var keys []string
	var get func(string) any
	switch x := item.(type) {
	case row:
		keys, get = x.keys, func(k string) any { return x.vals[k] }
	case map[string]any:
		if sortKeys {
			order = nil
		}
		keys, get = orderedKeys(x, order), func(k string) any { return x[k] }
	case []any:
		for i, v := range x {
			n := "Column" + strconv.Itoa(i+1)
			names = append(names, n)
			cols[n] = scalarText(v)
		}
		return names, cols
	default:
		return []string{"Result"}, map[string]string{"Result": scalarText(item)}
	}
	_, transformed := item.(row)
	for _, k := range keys {
		v := get(k)
		if !transformed && (slices.Contains(tableSkip, k) || v == nil) {
			continue
		}
		switch v.(type) {
		case map[string]any, []any:
			if !transformed {
				continue
			}
		}
		n := k
		if !transformed {
			r, size := utf8.DecodeRuneInString(k)
			n = strings.ToUpper(string(r)) + k[size:]
		}
		names = append(names, n)
		if v == nil {
			cols[n] = ""
		} else {
			cols[n] = scalarText(v)
		}
	}
	return names, cols
}

// writeTable writes v as az's "simple" table: a header row, a row of
// dashes as wide as each column, then one row per item.
func writeTable(w io.Writer, v any, order []string, sortKeys bool) {
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case []row:
		for _, r := range x {
			items = append(items, r)
		}
	case nil:
		return
	default:
		items = []any{v}
	}
	var header []string
	var rows []map[string]string
	for _, it := range items {
		names, cols := tableRow(it, order, sortKeys)
		for _, n := range names {
			if !slices.Contains(header, n) {
				header = append(header, n)
			}
		}
		rows = append(rows, cols)
	}
	if len(header) == 0 {
		return
	}
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = utf8.RuneCountInString(h)
		for _, r := range rows {
			width[i] = max(width[i], utf8.RuneCountInString(r[h]))
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	line(header)
	dashes := make([]string, len(header))
	for i := range header {
		dashes[i] = strings.Repeat("-", width[i])
	}
	line(dashes)
	for _, r := range rows {
		cells := make([]string, len(header))
		for i, h := range header {
			cells[i] = sanitizeCell(r[h])
		}
		line(cells)
	}
	tw.Flush()
}

func sanitizeCell(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

// writeTSV writes values only, tab-separated, one line per item, as az's
// tsv output: objects give their values (in query order, else sorted by
// key), nested objects an empty field, nested lists their length.
func writeTSV(w io.Writer, v any, order []string) {
	items, ok := v.([]any)
	if !ok {
		if v == nil {
			items = nil
		} else {
			items = []any{v}
		}
	}
	field := func(x any) string {
		switch y := x.(type) {
		case []any:
			return strconv.Itoa(len(y))
		case map[string]any:
			return ""
		}
		return sanitizeCell(scalarText(x))
	}
	for _, it := range items {
		var fields []string
		switch x := it.(type) {
		case map[string]any:
			for _, k := range orderedKeys(x, order) {
				fields = append(fields, field(x[k]))
			}
		case []any:
			for _, y := range x {
				fields = append(fields, field(y))
			}
		default:
			fields = append(fields, field(x))
		}
		fmt.Fprintln(w, strings.Join(fields, "\t"))
	}
}

// ANSI colours for jsonc.
const (
	colorKey    = "\x1b[94m"
	colorString = "\x1b[32m"
	colorOther  = "\x1b[36m"
	colorReset  = "\x1b[0m"
)

// writeJSON writes v as az does: two-space indent, keys sorted, non-ASCII
// kept; color adds ANSI colours (jsonc on a terminal).
func writeJSON(w io.Writer, v any, color bool) {
	j := jsonWriter{w: w, color: color}
	j.value(v, 0)
	io.WriteString(w, "\n")
}

type jsonWriter struct {
	w     io.Writer
	color bool
}

func (j jsonWriter) paint(c, s string) {
	if j.color {
		io.WriteString(j.w, c+s+colorReset)
		return
	}
	io.WriteString(j.w, s)
}

func jsonString(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func (j jsonWriter) value(v any, depth int) {
	pad := strings.Repeat("  ", depth+1)
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			io.WriteString(j.w, "{}")
			return
		}
		io.WriteString(j.w, "{\n")
		for i, k := range orderedKeys(x, nil) {
			io.WriteString(j.w, pad)
			j.paint(colorKey, jsonString(k))
			io.WriteString(j.w, ": ")
			j.value(x[k], depth+1)
			if i < len(x)-1 {
				io.WriteString(j.w, ",")
			}
			io.WriteString(j.w, "\n")
		}
		io.WriteString(j.w, pad[2:]+"}")
	case []any:
		if len(x) == 0 {
			io.WriteString(j.w, "[]")
			return
		}
		io.WriteString(j.w, "[\n")
		for i, e := range x {
			io.WriteString(j.w, pad)
			j.value(e, depth+1)
			if i < len(x)-1 {
				io.WriteString(j.w, ",")
			}
			io.WriteString(j.w, "\n")
		}
		io.WriteString(j.w, pad[2:]+"]")
	case row:
		m := map[string]any{}
		for k, e := range x.vals {
			m[k] = e
		}
		j.value(m, depth)
	case string:
		j.paint(colorString, jsonString(x))
	case float64:
		j.paint(colorOther, strconv.FormatFloat(x, 'f', -1, 64))
	case nil:
		j.paint(colorOther, "null")
	default:
		b, err := json.Marshal(x)
		if err != nil {
			b = []byte(jsonString(fmt.Sprint(x)))
		}
		j.paint(colorOther, string(b))
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// tableOf turns a row function into a -o table view that takes one object
// or a list of them.
func tableOf(one func(m map[string]any) row) func(any) any {
	return func(v any) any {
		if list, ok := v.([]any); ok {
			rows := []row{}
			for _, x := range list {
				m, _ := x.(map[string]any)
				rows = append(rows, one(m))
			}
			return rows
		}
		m, _ := v.(map[string]any)
		return one(m)
	}
}
