"""The admin API: declarative cluster topologies over HTTP (CONTRACT.md "The admin API").

`document` validates and normalises a topology document (every problem at once), `service`
applies, reads and deletes topologies all or nothing (verify every participant, store at
the version read, wait for the deployment, roll back), and `api` puts them on `port` behind
the bearer token with body limits. Topologies are stored in the CMDB
(`registries.tables`) and read back by the topology registry (`registries.topology`).
"""
