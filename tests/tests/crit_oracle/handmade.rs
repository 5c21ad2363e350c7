//! Hand-made values for every message kind the CRIU fixtures lack (sockets of other families,
//! namespaces, SysV IPC, BPF maps, ...), and the small builders they share with the tests.

use checkpoint_core::image::pb::*;
use checkpoint_core::image::{AnyEntry, AnyImage, AnyMessage, ImageKind, Payload};
use prost::Message;

pub fn entry(message: AnyMessage) -> AnyEntry {
    AnyEntry {
        message,
        payload: Payload::None,
    }
}

pub fn with_payload(message: AnyMessage, bytes: &[u8]) -> AnyEntry {
    AnyEntry {
        message,
        payload: Payload::Bytes(bytes.to_vec()),
    }
}

pub fn image(kind: ImageKind, entries: Vec<AnyEntry>) -> AnyImage {
    AnyImage {
        magic: kind,
        entries,
        raw_size: None,
    }
}

pub fn fown() -> FownEntry {
    FownEntry {
        uid: 1000,
        euid: 1001,
        signum: 10,
        pid_type: 1,
        pid: 4242,
    }
}

pub fn opts() -> SkOptsEntry {
    SkOptsEntry {
        so_sndbuf: 212_992,
        so_rcvbuf: 131_072,
        so_snd_tmo_sec: 3,
        so_snd_tmo_usec: 4,
        so_rcv_tmo_sec: 5,
        so_rcv_tmo_usec: 6,
        reuseaddr: Some(true),
        so_priority: Some(6),
        so_rcvlowat: Some(2),
        so_mark: Some(77),
        so_passcred: Some(true),
        so_passsec: Some(false),
        so_dontroute: Some(true),
        so_no_check: Some(false),
        so_bound_dev: Some("lo".into()),
        so_filter: vec![0x0000_0006_0000_ffff, 0x15],
        so_reuseport: Some(true),
        so_broadcast: Some(true),
        so_keepalive: Some(true),
        tcp_keepcnt: Some(9),
        tcp_keepidle: Some(7200),
        tcp_keepintvl: Some(75),
        so_oobinline: Some(1),
        so_linger: Some(10),
        so_buf_lock: Some(3),
    }
}

pub fn fh(path: &str) -> FhEntry {
    FhEntry {
        bytes: 8,
        r#type: 1,
        handle: vec![0x1122_3344_5566_7788, 9],
        path: Some(path.into()),
        mnt_id: Some(21),
    }
}

pub fn desc(id: u32) -> IpcDescEntry {
    IpcDescEntry {
        key: 0x1234,
        uid: 1,
        gid: 2,
        cuid: 3,
        cgid: 4,
        mode: 0o600,
        id,
    }
}

pub fn sysctl(v: i32) -> SysctlEntry {
    SysctlEntry {
        r#type: SysctlType::Ctl32 as i32,
        iarg: Some(v),
        sarg: None,
    }
}

/// Values for every message kind the fixtures do not contain.
pub fn handmade() -> Vec<(AnyImage, u64)> {
    let file = |t: FdTypes, id: u32| FileEntry {
        r#type: t as i32,
        id,
        ..Default::default()
    };
    let files = vec![
        entry(AnyMessage::File(FileEntry {
            psk: Some(PacketSockEntry {
                id: 1,
                r#type: 3,
                protocol: 0x0300,
                flags: 2,
                ifindex: 1,
                fown: fown(),
                opts: opts(),
                version: 2,
                reserve: 4,
                aux_data: true,
                orig_dev: true,
                vnet_hdr: false,
                loss: true,
                timestamp: 1,
                copy_thresh: 128,
                mclist: vec![PacketMclist {
                    index: 1,
                    r#type: 2,
                    addr: vec![1, 2, 3, 4, 5, 6],
                }],
                fanout: Some(7),
                rx_ring: Some(PacketRing {
                    block_size: 4096,
                    block_nr: 2,
                    frame_size: 2048,
                    frame_nr: 4,
                    retire_tmo: 10,
                    sizeof_priv: 0,
                    features: 1,
                }),
                tx_ring: None,
                ns_id: Some(10),
            }),
            ..file(FdTypes::Packetsk, 1)
        })),
        entry(AnyMessage::File(FileEntry {
            nlsk: Some(NetlinkSkEntry {
                id: 2,
                ino: 555,
                protocol: 0,
                state: 7,
                flags: 2,
                portid: 1234,
                groups: vec![1, 0],
                dst_portid: 0,
                dst_group: 0,
                fown: fown(),
                opts: opts(),
                ns_id: Some(10),
            }),
            ..file(FdTypes::Netlinksk, 2)
        })),
        entry(AnyMessage::File(FileEntry {
            tunf: Some(TunfileEntry {
                id: 3,
                netdev: Some("tap0".into()),
                detached: Some(true),
                ns_id: Some(10),
            }),
            ..file(FdTypes::Tunf, 3)
        })),
        entry(AnyMessage::File(FileEntry {
            ffy: Some(FanotifyFileEntry {
                id: 4,
                flags: 2,
                fown: fown(),
                faflags: 0x10,
                evflags: 0x8000,
                mark: vec![
                    FanotifyMarkEntry {
                        id: 4,
                        r#type: MarkType::Inode as i32,
                        mflags: 1,
                        mask: 0x20,
                        ignored_mask: 0,
                        s_dev: 0x801,
                        ie: Some(FanotifyInodeMarkEntry {
                            i_ino: 1234,
                            f_handle: fh("/etc/passwd"),
                        }),
                        me: None,
                    },
                    FanotifyMarkEntry {
                        id: 4,
                        r#type: MarkType::Mount as i32,
                        mflags: 0,
                        mask: 0x8,
                        ignored_mask: 1,
                        s_dev: 0x802,
                        ie: None,
                        me: Some(FanotifyMountMarkEntry {
                            mnt_id: 33,
                            path: Some("/".into()),
                        }),
                    },
                ],
            }),
            ..file(FdTypes::Fanotify, 4)
        })),
        entry(AnyMessage::File(FileEntry {
            ext: Some(ExtFileEntry { id: 5, fown: fown() }),
            ..file(FdTypes::Ext, 5)
        })),
        entry(AnyMessage::File(FileEntry {
            bpf: Some(BpfmapFileEntry {
                id: 6,
                flags: 2,
                pos: 0,
                fown: fown(),
                map_type: 1,
                key_size: 4,
                value_size: 8,
                map_id: 17,
                max_entries: 16,
                map_flags: 0,
                memlock: 4096,
                frozen: true,
                map_name: "counts".into(),
                ifindex: 0,
                mnt_id: Some(-1),
                map_extra: None,
            }),
            ..file(FdTypes::Bpfmap, 6)
        })),
        entry(AnyMessage::File(FileEntry {
            nsf: Some(NsFileEntry {
                id: 7,
                ns_id: 10,
                ns_cflag: 0x4000_0000,
                flags: 0,
            }),
            ..file(FdTypes::Ns, 7)
        })),
        entry(AnyMessage::File(FileEntry {
            isk: Some(InetSkEntry {
                id: 8,
                ino: 0x1234,
                family: 10,
                r#type: 1,
                proto: 6,
                state: 1,
                src_port: 8080,
                dst_port: 40000,
                flags: 0x802,
                backlog: 0,
                src_addr: vec![0, 0, 0, 0x0100_0000],
                dst_addr: vec![0, 0, 0, 0x0100_0000],
                fown: fown(),
                opts: opts(),
                v6only: Some(true),
                ip_opts: Some(IpOptsEntry {
                    freebind: Some(true),
                    raw: Some(IpOptsRawEntry {
                        hdrincl: Some(true),
                        nodefrag: Some(false),
                        checksum: Some(true),
                        icmpv_filter: vec![1, 2, 3, 4, 5, 6, 7, 8],
                    }),
                    ..Default::default()
                }),
                ifname: Some("eth0".into()),
                ns_id: Some(10),
                shutdown: None,
                tcp_opts: None,
            }),
            ..file(FdTypes::Inetsk, 8)
        })),
    ];
    let mut msgs = Vec::new();
    let inq = b"queued-for-reading";
    let outq = b"not-yet-acked";
    msgs.push((
        image(
            ImageKind::TcpStream,
            vec![with_payload(
                AnyMessage::TcpStream(TcpStreamEntry {
                    inq_len: inq.len() as u32,
                    inq_seq: 1000,
                    outq_len: outq.len() as u32,
                    outq_seq: 2000,
                    opt_mask: 7,
                    snd_wscale: 7,
                    mss_clamp: 65483,
                    rcv_wscale: Some(7),
                    timestamp: Some(123_456),
                    cork: Some(false),
                    nodelay: Some(true),
                    unsq_len: Some(0),
                    snd_wl1: Some(1),
                    snd_wnd: Some(65535),
                    max_window: Some(65535),
                    rcv_wnd: Some(65483),
                    rcv_wup: Some(1000),
                }),
                &[&inq[..], &outq[..]].concat(),
            )],
        ),
        0x1234,
    ));
    msgs.push((image(ImageKind::Files, files), 0));
    let shm_data = b"shared segment!"; // 15 bytes, padded to 16
    let mut shm_payload = shm_data.to_vec();
    shm_payload.push(0);
    msgs.push((
        image(
            ImageKind::IpcnsShm,
            vec![with_payload(
                AnyMessage::IpcShm(IpcShmEntry {
                    desc: desc(1),
                    size: 15,
                    in_pagemaps: Some(false),
                    hugetlb_flag: None,
                }),
                &shm_payload,
            )],
        ),
        11,
    ));
    // Three semaphores: 6 bytes, padded to 8.
    msgs.push((
        image(
            ImageKind::IpcnsSem,
            vec![with_payload(
                AnyMessage::IpcSem(IpcSemEntry {
                    desc: desc(2),
                    nsems: 3,
                }),
                &[1, 0, 2, 0, 0xff, 0x7f, 0, 0],
            )],
        ),
        11,
    ));
    let msg = IpcMsg { mtype: 5, msize: 3 };
    let body = msg.encode_to_vec();
    let mut queue = (body.len() as u32).to_le_bytes().to_vec();
    queue.extend_from_slice(&body);
    queue.extend_from_slice(b"abc\0\0\0\0\0");
    msgs.push((
        image(
            ImageKind::IpcnsMsg,
            vec![with_payload(
                AnyMessage::IpcMsg(IpcMsgEntry {
                    desc: desc(3),
                    qbytes: 16384,
                    qnum: 1,
                }),
                &queue,
            )],
        ),
        11,
    ));
    msgs.push((
        image(
            ImageKind::Netdev,
            vec![
                entry(AnyMessage::NetDevice(NetDeviceEntry {
                    r#type: NdType::Loopback as i32,
                    ifindex: 1,
                    mtu: 65536,
                    flags: 0x49,
                    name: "lo".into(),
                    address: Some(vec![0; 6]),
                    conf4: vec![sysctl(1), sysctl(0)],
                    conf6: vec![sysctl(64)],
                    ..Default::default()
                })),
                entry(AnyMessage::NetDevice(NetDeviceEntry {
                    r#type: NdType::Tun as i32,
                    ifindex: 2,
                    mtu: 1500,
                    flags: 0x1003,
                    name: "tap0".into(),
                    tun: Some(TunLinkEntry {
                        flags: 2,
                        owner: -1,
                        group: -1,
                        vnethdr: 10,
                        sndbuf: 1_000_000,
                    }),
                    address: Some(vec![2, 0, 0, 0, 0, 1]),
                    conf: vec![1, -1],
                    macvlan: Some(MacvlanLinkEntry {
                        mode: 4,
                        flags: Some(1),
                    }),
                    peer_ifindex: Some(5),
                    peer_nsid: Some(2),
                    master: Some(3),
                    sit: Some(SitEntry {
                        link: Some(1),
                        local: vec![0x0100_007f],
                        remote: vec![0x0200_007f],
                        ttl: Some(64),
                        tos: Some(1),
                        pmtudisc: Some(true),
                        proto: Some(41),
                        flags: Some(0),
                        encap_type: Some(1),
                        encap_flags: Some(2),
                        encap_sport: Some(3),
                        encap_dport: Some(4),
                        rd_prefixlen: Some(16),
                        rd_prefix: vec![1, 2, 3, 4],
                        relay_prefixlen: Some(8),
                        relay_prefix: vec![5],
                    }),
                    ..Default::default()
                })),
            ],
        ),
        10,
    ));
    msgs.push((
        image(
            ImageKind::Netns,
            vec![entry(AnyMessage::Netns(NetnsEntry {
                def_conf: vec![1, 2],
                all_conf: vec![3],
                def_conf4: vec![sysctl(1)],
                all_conf4: vec![sysctl(0)],
                def_conf6: vec![sysctl(2)],
                all_conf6: vec![SysctlEntry {
                    r#type: SysctlType::CtlStr as i32,
                    iarg: None,
                    sarg: Some("x".into()),
                }],
                nsids: vec![NetnsId {
                    target_ns_id: 12,
                    netnsid_value: -1,
                }],
                ext_key: Some("extnet".into()),
                unix_conf: vec![sysctl(10)],
                ipv4_sysctl: Vec::new(),
            }))],
        ),
        10,
    ));
    msgs.push((
        image(
            ImageKind::Userns,
            vec![entry(AnyMessage::Userns(UsernsEntry {
                uid_map: vec![UidGidExtent {
                    first: 0,
                    lower_first: 100_000,
                    count: 65536,
                }],
                gid_map: vec![UidGidExtent {
                    first: 0,
                    lower_first: 200_000,
                    count: 1,
                }],
            }))],
        ),
        7,
    ));
    msgs.push((
        image(
            ImageKind::Pidns,
            vec![entry(AnyMessage::Pidns(PidnsEntry {
                ext_key: Some("pidns".into()),
            }))],
        ),
        9,
    ));
    msgs.push((
        image(
            ImageKind::Apparmor,
            vec![entry(AnyMessage::Apparmor(ApparmorEntry {
                namespaces: vec![AaNamespace {
                    name: "root".into(),
                    policies: vec![AaPolicy {
                        name: "p".into(),
                        blob: vec![0, 1, 2, 250],
                    }],
                    namespaces: vec![AaNamespace {
                        name: "child".into(),
                        ..Default::default()
                    }],
                }],
            }))],
        ),
        0,
    ));
    msgs.push((
        image(
            ImageKind::Cpuinfo,
            vec![entry(AnyMessage::Cpuinfo(CpuinfoEntry {
                x86_entry: vec![CpuinfoX86Entry {
                    vendor_id: CpuVendor::Amd as i32,
                    cpu_family: 25,
                    model: 1,
                    stepping: 1,
                    capability_ver: 2,
                    capability: vec![0xffff_ffff, 1, 2],
                    model_id: Some("EPYC".into()),
                    xfeatures_mask: Some(0x2e7),
                    xsave_size: Some(2440),
                    xsave_size_max: Some(2696),
                }],
            }))],
        ),
        0,
    ));
    msgs.push((
        image(
            ImageKind::Autofs,
            vec![entry(AnyMessage::Autofs(AutofsEntry {
                fd: 3,
                pgrp: 100,
                timeout: 300,
                minproto: 3,
                maxproto: 5,
                mode: 1,
                uid: Some(0),
                gid: Some(0),
                read_fd: Some(4),
            }))],
        ),
        44,
    ));
    let keys = [1u8, 0, 0, 0];
    let values = [9u8, 0, 0, 0, 0, 0, 0, 0];
    msgs.push((
        image(
            ImageKind::BpfmapData,
            vec![with_payload(
                AnyMessage::BpfmapData(BpfmapDataEntry {
                    map_id: 17,
                    keys_bytes: 4,
                    values_bytes: 8,
                    count: 1,
                }),
                &[&keys[..], &values[..]].concat(),
            )],
        ),
        0,
    ));
    msgs.push((
        image(
            ImageKind::IrmapCache,
            vec![entry(AnyMessage::IrmapCache(IrmapCacheEntry {
                dev: 0x801,
                inode: 42,
                path: "/var/log".into(),
            }))],
        ),
        0,
    ));
    msgs.push((
        image(
            ImageKind::ExtFiles,
            vec![entry(AnyMessage::ExtFile(ExtFileEntry { id: 9, fown: fown() }))],
        ),
        0,
    ));
    msgs.push((
        image(
            ImageKind::NsFiles,
            vec![entry(AnyMessage::NsFile(NsFileEntry {
                id: 10,
                ns_id: 4,
                ns_cflag: 0x0400_0000,
                flags: 2,
            }))],
        ),
        0,
    ));
    msgs.push((
        image(
            ImageKind::StatsRestore,
            vec![entry(AnyMessage::Stats(StatsEntry {
                dump: None,
                restore: Some(RestoreStatsEntry {
                    pages_compared: 1,
                    pages_skipped_cow: 2,
                    forking_time: 3,
                    restore_time: 4,
                    pages_restored: Some(5),
                }),
            }))],
        ),
        0,
    ));
    msgs
}
