package redistest

import (
	"reflect"
	"testing"
)

func TestParseClusterNodes(t *testing.T) {
	tests := []struct {
		name  string
		reply string
		want  []clusterNode
	}{
		{
			name:  "master with ranges and a single slot",
			reply: "07c3 127.0.0.1:30004@40004 myself,master - 0 1426238316232 1 connected 0-5460 5462\n",
			want: []clusterNode{{id: "07c3", addr: "127.0.0.1:30004", flags: []string{"myself", "master"}, master: "-",
				slots: []SlotRange{{0, 5460}, {5462, 5462}}}},
		},
		{
			name:  "replica, hostname, no slots",
			reply: "67ed 127.0.0.1:30002@40002,host-a slave 07c3 0 1426238316232 2 connected\n",
			want:  []clusterNode{{id: "67ed", addr: "127.0.0.1:30002", flags: []string{"slave"}, master: "07c3"}},
		},
		{
			name:  "migrating and importing slots left out",
			reply: "07c3 127.0.0.1:30004@40004 master - 0 0 1 connected 0-10 [11->-67ed] [12-<-67ed]\r\n",
			want: []clusterNode{{id: "07c3", addr: "127.0.0.1:30004", flags: []string{"master"}, master: "-",
				slots: []SlotRange{{0, 10}}}},
		},
		{
			name:  "failed master",
			reply: "292f 127.0.0.1:30001@40001 master,fail - 1 2 3 disconnected\n",
			want:  []clusterNode{{id: "292f", addr: "127.0.0.1:30001", flags: []string{"master", "fail"}, master: "-"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseClusterNodes(tc.reply)
			if err != nil {
				t.Fatalf("parseClusterNodes: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseClusterNodes = %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"07c3 127.0.0.1:1@2 master", "07c3 127.0.0.1:1@2 master - 0 0 1 connected x-1"} {
		if got, err := parseClusterNodes(bad); err == nil {
			t.Errorf("parseClusterNodes(%q) = %+v, want an error", bad, got)
		}
	}
}
