//! steerd's hickory `RequestHandler`: the general, reference path for every query. TCP queries
//! always come here (through hickory-server's `Server`); UDP queries come here when the fast path
//! (`fast::try_answer`) cannot answer them.

use std::iter;
use std::net::SocketAddr;
use std::time::Instant;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tracing::debug;

use crate::dns::answer::{self, Pick, Reply};
use crate::dns::ecs::{self, Ecs};
use crate::dns::stats::{Proto, QueryKey, rcode_of};
use crate::table::ClientAddr;
use crate::table::{RoutingTable, TableHandle};

/// The request handler registered with hickory-server.
#[derive(Clone)]
pub struct DnsHandler {
    table: TableHandle,
}

impl DnsHandler {
    pub fn new(table: TableHandle) -> Self {
        Self { table }
    }
}

/// What to send back for a request.
enum Prepared<'t> {
    /// An error with no records (FORMERR, NOTIMP, BADVERS, REFUSED…).
    Error(ResponseCode),
    Reply(Reply<'t>),
}

/// The request's answer, and its valid ECS option (echoed in the response) if any.
fn prepare<'t>(table: &'t RoutingTable, request: &Request) -> (Prepared<'t>, Option<Ecs>) {
    if request.metadata.op_code != OpCode::Query {
        return (Prepared::Error(ResponseCode::NotImp), None);
    }
    if let Some(edns) = &request.edns
        && edns.version() > 0
    {
        return (Prepared::Error(ResponseCode::BADVERS), None);
    }
    let queries = request.queries.queries();
    if queries.len() != 1 {
        return (Prepared::Error(ResponseCode::FormErr), None);
    }
    // RFC 7871 §7.1.1: a malformed ECS option is a FORMERR.
    let ecs = match request.edns {
        Some(_) => match ecs::from_message(request.as_slice()) {
            Ok(e) => e,
            Err(reason) => {
                debug!(src = %request.src(), reason, "malformed ECS option");
                return (Prepared::Error(ResponseCode::FormErr), None);
            }
        },
        None => None,
    };
    let client = match ecs.and_then(|e| e.location_addr()) {
        Some(ip) => ClientAddr { ip, from_ecs: true },
        None => ClientAddr::resolver(request.src().ip()),
    };
    let q = queries[0].original();
    let mut reply = answer::answer(
        table,
        q.name(),
        q.query_type(),
        q.query_class(),
        Pick::Client(client),
    );
    if !client.from_ecs {
        reply.scope = 0;
    }
    // Served: count the answer (the general answer logic never counts, so explain does not).
    if let Some(si) = reply.service {
        table.count_answer(si as usize, reply.variant);
    }
    (Prepared::Reply(reply), ecs)
}

/// The OPT record of our responses: version 0, our maximum UDP payload, the query's DO bit,
/// and the ECS option with our scope when the query had one.
fn response_edns(
    request: &Request,
    table: &RoutingTable,
    prepared: &Prepared<'_>,
    ecs: Option<Ecs>,
) -> Option<Edns> {
    request.edns.as_ref().map(|q| {
        let mut e = Edns::new();
        e.set_max_payload(table.settings.max_udp_payload);
        e.set_version(0);
        // RFC 3225 §3: the DO bit of the query is copied into the response.
        e.set_dnssec_ok(q.flags().dnssec_ok);
        if let Some(ecs) = ecs {
            let scope = match prepared {
                Prepared::Reply(r) => r.scope,
                Prepared::Error(_) => 0,
            };
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                ecs.addr,
                ecs.source_prefix,
                scope,
            )));
        }
        e
    })
}

/// Largest UDP response for this request (RFC 1035 512, or the advertised EDNS size clamped to
/// our configured maximum).
fn udp_limit(request: &Request, table: &RoutingTable) -> u16 {
    match &request.edns {
        Some(e) => e.max_payload().clamp(512, table.settings.max_udp_payload),
        None => 512,
    }
}

type Response<'q, 'a> = MessageResponse<
    'q,
    'a,
    Box<dyn Iterator<Item = &'a Record> + Send + 'a>,
    Box<dyn Iterator<Item = &'a Record> + Send + 'a>,
    Box<dyn Iterator<Item = &'a Record> + Send + 'a>,
    Box<dyn Iterator<Item = &'a Record> + Send + 'a>,
>;

/// Build the hickory response; `truncated` drops every record and sets TC (the client retries
/// over TCP and gets everything).
fn build<'q, 'a>(
    request: &'q Request,
    prepared: &'a Prepared<'a>,
    edns: Option<&'q Edns>,
    truncated: bool,
) -> Response<'q, 'a> {
    let builder = MessageResponseBuilder::new(&request.queries, edns);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    let empty = || -> Box<dyn Iterator<Item = &'a Record> + Send + 'a> { Box::new(iter::empty()) };
    match prepared {
        Prepared::Error(code) => {
            metadata.response_code = *code;
            builder.build(metadata, empty(), empty(), empty(), empty())
        }
        Prepared::Reply(r) => {
            metadata.response_code = r.rcode;
            metadata.authoritative = r.authoritative;
            if truncated {
                metadata.truncation = true;
                return builder.build(metadata, empty(), empty(), empty(), empty());
            }
            builder.build(
                metadata,
                boxed(r.answers.iter().copied()),
                boxed(r.authority.iter().copied()),
                empty(),
                boxed(r.additional.iter().copied()),
            )
        }
    }
}

fn boxed<'a>(
    it: impl Iterator<Item = &'a Record> + Send + 'a,
) -> Box<dyn Iterator<Item = &'a Record> + Send + 'a> {
    Box::new(it)
}

fn encode(response: Response<'_, '_>, max: u16) -> Option<(Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_max_size(max);
    let info = response.destructive_emit(&mut enc).ok()?;
    Some((buf, info.truncation))
}

/// The query-metrics key of a prepared answer.
fn stats_key(table: &RoutingTable, prepared: &Prepared<'_>, proto: Proto, ecs: bool) -> QueryKey {
    match prepared {
        Prepared::Error(code) => QueryKey::new(0, 0, rcode_of(*code), proto, ecs),
        Prepared::Reply(r) => r.stats_key(table, proto, ecs),
    }
}

/// Encode the answer to a UDP request within the client's size limit: if the full answer does
/// not fit, an empty answer with TC=1. Also the query's metrics key.
fn encode_udp(request: &Request, table: &RoutingTable) -> Option<(Vec<u8>, QueryKey)> {
    let (prepared, ecs) = prepare(table, request);
    let key = stats_key(table, &prepared, Proto::Udp, ecs.is_some());
    let edns = response_edns(request, table, &prepared, ecs);
    let limit = udp_limit(request, table);
    let (bytes, tc) = encode(build(request, &prepared, edns.as_ref(), false), limit)?;
    if !tc {
        return Some((bytes, key));
    }
    encode(build(request, &prepared, edns.as_ref(), true), limit).map(|(b, _)| (b, key))
}

/// A FORMERR response built from a header we could parse (the rest of the packet could not be):
/// same ID and opcode, no sections.
pub fn formerr_from_header(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    let mut out = vec![0u8; 12];
    out[0..2].copy_from_slice(&raw[0..2]);
    // QR=1, opcode, RD and CD copied; RCODE=1 (FORMERR).
    out[2] = 0x80 | (raw[2] & 0x79);
    out[3] = 0x01 | (raw[3] & 0x10);
    Some(out)
}

/// The general path for a UDP packet the fast path did not answer: the response and the
/// query's metrics key. `None` means drop it.
pub fn answer_udp_slow(
    table: &RoutingTable,
    raw: &[u8],
    src: SocketAddr,
) -> Option<(Vec<u8>, QueryKey)> {
    match Request::from_bytes(raw.to_vec(), src, Protocol::Udp) {
        Err(e) => {
            debug!(%src, error = %e, "malformed query");
            formerr_from_header(raw).map(|r| (r, QueryKey::formerr(Proto::Udp)))
        }
        Ok(request) => {
            if request.metadata.message_type != MessageType::Query {
                return None;
            }
            encode_udp(&request, table)
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let table = self.table.load();
        let (prepared, ecs) = prepare(&table, request);
        let proto = match request.protocol() {
            Protocol::Udp => Proto::Udp,
            _ => Proto::Tcp,
        };
        let key = stats_key(&table, &prepared, proto, ecs.is_some());
        let edns = response_edns(request, &table, &prepared, ecs);
        // hickory truncates UDP answers record by record; we prefer an empty TC=1 answer so the
        // client retries over TCP, so check the size first.
        let truncated = request.protocol() == Protocol::Udp && {
            let limit = udp_limit(request, &table);
            encode(build(request, &prepared, edns.as_ref(), false), limit).is_none_or(|(_, tc)| tc)
        };
        let response = build(request, &prepared, edns.as_ref(), truncated);
        let fallback = *response.metadata();
        let sent = response_handle.send_response(response).await;
        table.counters.queries.record(key, start.elapsed());
        match sent {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, "failed to send response");
                let mut m = fallback;
                m.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_server::proto::op::Header {
                    metadata: m,
                    counts: Default::default(),
                })
            }
        }
    }
}
