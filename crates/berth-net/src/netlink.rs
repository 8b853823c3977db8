//! Links, addresses and routes over rtnetlink, in the host's or a container's namespace.
//!
//! Every call runs on a fresh thread that first joins the requested network namespace
//! (`setns` is per thread) and drives its own netlink socket on a current-thread tokio
//! runtime; a socket opened inside a namespace stays bound to it. The caller's thread never
//! changes namespace, so this is safe to call from a multi-threaded daemon.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::error::{NetError, Result};
use crate::ipam::{Mac, Subnet};

/// A link as listed from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `ifalias`, which berth uses to mark the devices it owns.
    pub alias: Option<String>,
    /// The bridge this link is enslaved to, if any.
    pub controller: Option<u32>,
}

fn nl_err(op: impl Into<String>, e: rtnetlink::Error) -> NetError {
    let source = match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    };
    NetError::Netlink {
        op: op.into(),
        source,
    }
}

fn is_errno(e: &NetError, errno: i32) -> bool {
    matches!(e, NetError::Netlink { source, .. } if source.raw_os_error() == Some(errno))
}

/// Whether an error is the kernel's "no such device".
pub fn is_no_device(e: &NetError) -> bool {
    is_errno(e, 19)
}

/// Runs `f` with a netlink handle inside the namespace at `netns` (the host's when `None`).
pub fn run_in<F, Fut, T>(netns: Option<&Path>, f: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
    T: Send + 'static,
{
    let netns: Option<PathBuf> = netns.map(Path::to_path_buf);
    let worker = std::thread::Builder::new()
        .name("berth-netlink".into())
        .spawn(move || -> Result<T> {
            if let Some(path) = &netns {
                let fd = rustix::fs::open(
                    path,
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| {
                    NetError::io(
                        format!("open network namespace {}", path.display()),
                        e.into(),
                    )
                })?;
                rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| {
                    NetError::io(
                        format!("join network namespace {}", path.display()),
                        e.into(),
                    )
                })?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| NetError::io("start netlink runtime", e))?;
            rt.block_on(async move {
                let (conn, handle, _) = rtnetlink::new_connection()
                    .map_err(|e| NetError::io("open netlink socket", e))?;
                let task = tokio::spawn(conn);
                let out = f(handle).await;
                task.abort();
                out
            })
        });
    let worker = worker.map_err(|e| NetError::io("spawn netlink thread", e))?;
    worker
        .join()
        .map_err(|_| NetError::io("netlink thread", std::io::Error::other("panicked")))?
}

/// Lists every link of the namespace the handle is in.
pub async fn links(handle: &Handle) -> Result<Vec<LinkInfo>> {
    let mut out = Vec::new();
    let mut stream = handle.link().get().execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| nl_err("list links", e))?
    {
        out.push(link_info(&msg));
    }
    Ok(out)
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        alias: None,
        controller: None,
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::IfAlias(s) => info.alias = Some(s.clone()),
            LinkAttribute::Controller(c) => info.controller = Some(*c),
            _ => {}
        }
    }
    info
}

/// Finds a link by name.
pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkInfo>> {
    let mut stream = handle.link().get().match_name(name.to_string()).execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(Some(link_info(&msg))),
        Ok(None) => Ok(None),
        Err(e) => {
            let e = nl_err(format!("get link {name}"), e);
            if is_no_device(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Deletes a link by name; a missing link is not an error (teardown is idempotent).
pub async fn delete_link(handle: &Handle, name: &str) -> Result<()> {
    let Some(link) = link_by_name(handle, name).await? else {
        return Ok(());
    };
    match handle
        .link()
        .del(link.index)
        .execute()
        .await
        .map_err(|e| nl_err(format!("delete link {name}"), e))
    {
        Err(e) if is_no_device(&e) => Ok(()),
        other => other,
    }
}

/// Creates bridge `name` marked with `alias`, gives it `gateway/prefix`, sets `mtu`, brings it up.
pub async fn create_bridge(
    handle: &Handle,
    name: &str,
    alias: &str,
    gateway: Ipv4Addr,
    subnet: Subnet,
    mtu: Option<u32>,
) -> Result<u32> {
    let mut b = LinkBridge::new(name);
    if let Some(mtu) = mtu {
        b = b.mtu(mtu);
    }
    handle
        .link()
        .add(b.build())
        .execute()
        .await
        .map_err(|e| nl_err(format!("add bridge {name}"), e))?;
    let link = link_by_name(handle, name)
        .await?
        .ok_or_else(|| NetError::Netlink {
            op: format!("find bridge {name}"),
            source: std::io::Error::from_raw_os_error(19),
        })?;
    handle
        .address()
        .add(link.index, gateway.into(), subnet.prefix())
        .execute()
        .await
        .map_err(|e| {
            nl_err(
                format!("add address {gateway}/{} to {name}", subnet.prefix()),
                e,
            )
        })?;
    set_alias(handle, link.index, name, alias).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(link.index).up().build())
        .execute()
        .await
        .map_err(|e| nl_err(format!("set {name} up"), e))?;
    Ok(link.index)
}

/// Sets `ifalias` (the kernel ignores it in RTM_NEWLINK, so it is a separate request).
async fn set_alias(handle: &Handle, index: u32, name: &str, alias: &str) -> Result<()> {
    let msg = LinkUnspec::new_with_index(index)
        .append_extra_attribute(LinkAttribute::IfAlias(alias.to_string()))
        .build();
    handle
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(|e| nl_err(format!("set alias of {name}"), e))
}

/// What to create for one endpoint.
#[derive(Clone, Debug)]
pub struct VethPlan {
    /// Host-side name (enslaved to the bridge).
    pub host_name: String,
    /// Final name of the container side (`eth0`), created directly in the container's namespace.
    pub peer_name: String,
    /// MAC address of the container side.
    pub peer_mac: Mac,
    /// Marker alias for the host side.
    pub alias: String,
    /// The bridge to attach to.
    pub bridge: String,
    /// MTU for both ends.
    pub mtu: Option<u32>,
}

/// Creates the veth pair with its peer born inside `netns` (no move between namespaces, which
/// costs RCU grace periods), then attaches the host end to the bridge and brings it up.
pub async fn create_veth(handle: &Handle, plan: &VethPlan, netns: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let bridge = link_by_name(handle, &plan.bridge)
        .await?
        .ok_or_else(|| NetError::NotFound(format!("bridge {}", plan.bridge)))?;
    let ns = std::fs::File::open(netns)
        .map_err(|e| NetError::io(format!("open network namespace {}", netns.display()), e))?;
    let mut peer = LinkUnspec::new_with_name(&plan.peer_name)
        .setns_by_fd(ns.as_raw_fd())
        .address(plan.peer_mac.0.to_vec());
    if let Some(mtu) = plan.mtu {
        peer = peer.mtu(mtu);
    }
    let mut v = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(plan.host_name.clone())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    if let Some(mtu) = plan.mtu {
        v = v.mtu(mtu);
    }
    handle.link().add(v.build()).execute().await.map_err(|e| {
        nl_err(
            format!(
                "add veth {} with peer {} in {}",
                plan.host_name,
                plan.peer_name,
                netns.display()
            ),
            e,
        )
    })?;
    drop(ns);
    let res = async {
        let host = link_by_name(handle, &plan.host_name)
            .await?
            .ok_or_else(|| NetError::NotFound(format!("veth {}", plan.host_name)))?;
        set_alias(handle, host.index, &plan.host_name, &plan.alias).await?;
        let set_host = LinkUnspec::new_with_index(host.index)
            .controller(bridge.index)
            .up();
        handle
            .link()
            .set(set_host.build())
            .execute()
            .await
            .map_err(|e| nl_err(format!("attach {} to {}", plan.host_name, plan.bridge), e))?;
        // hairpin: with br_netfilter, a container's DNATed connection to its own published port
        // is bridged back out the port it came in on.
        let hp = format!("/sys/class/net/{}/brport/hairpin_mode", plan.host_name);
        std::fs::write(&hp, "1").map_err(|e| NetError::io(format!("write {hp}"), e))?;
        Ok(())
    }
    .await;
    if res.is_err() {
        let _ = delete_link(handle, &plan.host_name).await;
    }
    res
}

/// Configuration of the container side, applied inside its namespace.
#[derive(Clone, Debug)]
pub struct InsidePlan {
    /// Interface name (`eth0`, `eth1`, …).
    pub ifname: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// The subnet (prefix length of the address).
    pub subnet: Subnet,
    /// Default route via this gateway (none for internal networks or when one exists).
    pub gateway: Option<Ipv4Addr>,
}

/// Addresses and brings up the container side and `lo`; adds the default route when asked
/// and when the namespace has none yet (a second network does not steal the first's route).
pub async fn configure_inside(handle: &Handle, p: &InsidePlan) -> Result<()> {
    let link = link_by_name(handle, &p.ifname)
        .await?
        .ok_or_else(|| NetError::NotFound(format!("{} in container", p.ifname)))?;
    if let Some(lo) = link_by_name(handle, "lo").await? {
        handle
            .link()
            .set(LinkUnspec::new_with_index(lo.index).up().build())
            .execute()
            .await
            .map_err(|e| nl_err("set lo up", e))?;
    }
    handle
        .address()
        .add(link.index, p.ip.into(), p.subnet.prefix())
        .execute()
        .await
        .map_err(|e| {
            nl_err(
                format!("add address {}/{} to {}", p.ip, p.subnet.prefix(), p.ifname),
                e,
            )
        })?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(link.index).up().build())
        .execute()
        .await
        .map_err(|e| nl_err(format!("set {} up", p.ifname), e))?;
    if let Some(gw) = p.gateway {
        let has_default = routes_v4(handle)
            .await?
            .iter()
            .any(|r| r.dest.prefix() == 0);
        if !has_default {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(link.index)
                .build();
            handle
                .route()
                .add(route)
                .execute()
                .await
                .map_err(|e| nl_err(format!("add default route via {gw}"), e))?;
        }
    }
    Ok(())
}

/// One IPv4 route of the main table.
#[derive(Clone, Debug)]
pub struct Route4 {
    /// Destination (0.0.0.0/0 for a default route).
    pub dest: Subnet,
    /// Output interface index.
    pub oif: Option<u32>,
}

/// Lists the IPv4 routes of the namespace (all tables the kernel dumps).
pub async fn routes_v4(handle: &Handle) -> Result<Vec<Route4>> {
    let mut out = Vec::new();
    let mut stream = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| nl_err("list routes", e))?
    {
        let mut dest = Ipv4Addr::UNSPECIFIED;
        let mut oif = None;
        for a in &msg.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dest = *ip,
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        if let Ok(dest) = Subnet::new(dest, msg.header.destination_prefix_length) {
            out.push(Route4 { dest, oif });
        }
    }
    Ok(out)
}

/// The names of every link in the namespace.
pub async fn link_names(handle: &Handle) -> Result<Vec<String>> {
    Ok(links(handle).await?.into_iter().map(|l| l.name).collect())
}

/// Writes a per-interface IPv4 sysctl (`/proc/sys/net/ipv4/conf/<if>/<key>`).
pub fn set_if_sysctl(ifname: &str, key: &str, value: &str) -> Result<()> {
    crate::validate_ifname(ifname)?;
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/{key}");
    std::fs::write(&path, value).map_err(|e| NetError::io(format!("write {path}"), e))
}
