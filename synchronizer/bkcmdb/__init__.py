"""The BlueKing CMDB (bk-cmdb) side: client, reference model and simulator."""
