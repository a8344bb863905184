package custody

import "strings"

// Azure's public regions: name and display name, as `az account
// list-locations` shows them. Requests may give either, in any case and
// with or without spaces; resources store the name.
var regions = [][2]string{
	{"eastus", "East US"}, {"eastus2", "East US 2"}, {"southcentralus", "South Central US"},
	{"westus2", "West US 2"}, {"westus3", "West US 3"}, {"australiaeast", "Australia East"},
	{"southeastasia", "Southeast Asia"}, {"northeurope", "North Europe"}, {"swedencentral", "Sweden Central"},
	{"uksouth", "UK South"}, {"westeurope", "West Europe"}, {"centralus", "Central US"},
	{"southafricanorth", "South Africa North"}, {"centralindia", "Central India"}, {"eastasia", "East Asia"},
	{"japaneast", "Japan East"}, {"koreacentral", "Korea Central"}, {"canadacentral", "Canada Central"},
	{"francecentral", "France Central"}, {"germanywestcentral", "Germany West Central"},
	{"italynorth", "Italy North"}, {"norwayeast", "Norway East"}, {"polandcentral", "Poland Central"},
	{"spaincentral", "Spain Central"}, {"switzerlandnorth", "Switzerland North"},
	{"mexicocentral", "Mexico Central"}, {"uaenorth", "UAE North"}, {"brazilsouth", "Brazil South"},
	{"israelcentral", "Israel Central"}, {"qatarcentral", "Qatar Central"}, {"newzealandnorth", "New Zealand North"},
	{"indonesiacentral", "Indonesia Central"}, {"malaysiawest", "Malaysia West"}, {"chilecentral", "Chile Central"},
	{"austriaeast", "Austria East"}, {"belgiumcentral", "Belgium Central"}, {"denmarkeast", "Denmark East"},
	{"northcentralus", "North Central US"}, {"westus", "West US"}, {"japanwest", "Japan West"},
	{"centraluseuap", "Central US EUAP"}, {"eastus2euap", "East US 2 EUAP"}, {"westcentralus", "West Central US"},
	{"southafricawest", "South Africa West"}, {"australiacentral", "Australia Central"},
	{"australiacentral2", "Australia Central 2"}, {"australiasoutheast", "Australia Southeast"},
	{"jioindiacentral", "Jio India Central"}, {"jioindiawest", "Jio India West"}, {"koreasouth", "Korea South"},
	{"southindia", "South India"}, {"westindia", "West India"}, {"canadaeast", "Canada East"},
	{"francesouth", "France South"}, {"germanynorth", "Germany North"}, {"norwaywest", "Norway West"},
	{"switzerlandwest", "Switzerland West"}, {"ukwest", "UK West"}, {"uaecentral", "UAE Central"},
	{"brazilsoutheast", "Brazil Southeast"}, {"swedensouth", "Sweden South"},
}

var regionByKey = func() map[string]string {
	m := make(map[string]string, len(regions))
	for _, r := range regions {
		m[r[0]] = r[0]
	}
	return m
}()

// Region is one Azure region: its name ("westus2") and display name ("West
// US 2").
type Region struct {
	Name        string
	DisplayName string
}

// Regions returns the table of regions, in Azure's order.
func Regions() []Region {
	out := make([]Region, len(regions))
	for i, r := range regions {
		out[i] = Region{Name: r[0], DisplayName: r[1]}
	}
	return out
}

// NormalizeLocation returns the region name of loc ("westus2" for "West US
// 2", "westus2" or "WestUS2"), and false when loc names no Azure region.
func NormalizeLocation(loc string) (string, bool) {
	k := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(loc), " ", ""))
	name, ok := regionByKey[k]
	return name, ok
}

// LocationError is the error for a location that names no region, with
// ARM's code for the kind of resource ("resource group" or a resource
// type such as "Microsoft.Batch/batchAccounts").
func LocationError(loc, what string) *Error {
	code := "LocationNotAvailableForResourceType"
	if what == "resource group" {
		code = "LocationNotAvailableForResourceGroup"
	}
	return Errorf(KindInvalid, code, "The provided location '%s' is not available for %s. Use a region name such as 'westus2' or its display name such as 'West US 2'.", loc, what)
}
