package sqlstore

// ResealedColumns lists the "table.column" pairs a re-encryption walk
// re-seals.
func ResealedColumns() map[string]bool {
	out := map[string]bool{}
	for _, t := range append(append([]resealTable{}, dataResealTables...), resealPools) {
		for _, c := range t.sealed {
			out[t.name+"."+c] = true
		}
	}
	return out
}
