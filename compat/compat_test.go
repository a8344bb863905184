// Package compat_test drives a real in-process Custody server with the
// official Azure SDK for Go clients.
package compat_test

import (
	"context"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/msi/armmsi"

	"custody/server/servertest"
)

func cloudConfig(ts *servertest.TestServer) cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: ts.URL("login") + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: ts.URL("management"), Audience: "https://management.azure.com/"},
		},
	}
}

func adminCredential(t *testing.T, ts *servertest.TestServer) azcore.TokenCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(ts.Admin.TenantID, ts.Admin.ClientID, ts.Admin.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cloudConfig(ts), Transport: ts.Client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func armOptions(ts *servertest.TestServer) *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cloudConfig(ts), Transport: ts.Client}, DisableRPRegistration: true}
}

func TestManagedIdentityLifecycle(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	createGroup(t, ts, "rg1")
	client, err := armmsi.NewUserAssignedIdentitiesClient(ts.Admin.SubscriptionID, adminCredential(t, ts), armOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	created, err := client.CreateOrUpdate(ctx, "rg1", "id1", armmsi.Identity{Location: to.Ptr("westus2"), Tags: map[string]*string{"env": to.Ptr("test")}}, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.Properties == nil || created.Properties.PrincipalID == nil || created.Properties.ClientID == nil || *created.Properties.TenantID != ts.Admin.TenantID {
		t.Fatalf("created identity lacks ids: %+v", created.Properties)
	}
	got, err := client.Get(ctx, "rg1", "id1", nil)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if *got.Properties.PrincipalID != *created.Properties.PrincipalID {
		t.Fatalf("principal id changed: %s != %s", *got.Properties.PrincipalID, *created.Properties.PrincipalID)
	}
	var names []string
	pager := client.NewListByResourceGroupPager("rg1", nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, v := range page.Value {
			names = append(names, *v.Name)
		}
	}
	if len(names) != 1 || names[0] != "id1" {
		t.Fatalf("list by group = %v, want [id1]", names)
	}
	subPager := client.NewListBySubscriptionPager(nil)
	n := 0
	for subPager.More() {
		page, err := subPager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list by subscription: %v", err)
		}
		n += len(page.Value)
	}
	if n != 1 {
		t.Fatalf("list by subscription found %d identities, want 1", n)
	}
	if _, err := client.Delete(ctx, "rg1", "id1", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := client.Get(ctx, "rg1", "id1", nil); err == nil {
		t.Fatal("get after delete succeeded")
	} else if re, ok := err.(*azcore.ResponseError); !ok || re.StatusCode != 404 {
		t.Fatalf("get after delete: %v, want 404", err)
	}
}
