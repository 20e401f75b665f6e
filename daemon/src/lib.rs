//! vnetd: the VNET forwarding daemon (see issue: vnetd).
