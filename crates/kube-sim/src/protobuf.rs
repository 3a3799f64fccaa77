//! Just enough of the Kubernetes protobuf encoding to read what kubectl's typed
//! generators send (`kubectl create namespace|configmap|secret|serviceaccount`): the
//! `k8s\0` envelope and those four kinds. Other kinds are refused with a message.

use serde_json::{Map, Value, json};

use base64::Engine as _;

const MAGIC: &[u8] = b"k8s\x00";

/// One decoded protobuf field: number and value.
#[derive(Debug)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                out.push((num, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(out)
}

fn string(f: &Field<'_>) -> String {
    match f {
        Field::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Field::Varint(v) => v.to_string(),
    }
}

fn map_entry(f: &Field<'_>, bytes_value: bool) -> Result<(String, Value), String> {
    let Field::Bytes(b) = f else {
        return Err("map entry is not a message".into());
    };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (n, x) in fields(b)? {
        match (n, &x) {
            (1, _) => k = string(&x),
            (2, Field::Bytes(raw)) if bytes_value => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(raw))
            }
            (2, _) => v = json!(string(&x)),
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(b)? {
        match n {
            1 => drop(m.insert("name".into(), json!(string(&f)))),
            2 => drop(m.insert("generateName".into(), json!(string(&f)))),
            3 => drop(m.insert("namespace".into(), json!(string(&f)))),
            6 => drop(m.insert("resourceVersion".into(), json!(string(&f)))),
            11 => drop(labels.insert(map_entry(&f, false)?.0, map_entry(&f, false)?.1)),
            12 => drop(annotations.insert(map_entry(&f, false)?.0, map_entry(&f, false)?.1)),
            14 => finalizers.push(json!(string(&f))),
            _ => {}
        }
    }
    for (k, v) in [("labels", labels), ("annotations", annotations)] {
        if !v.is_empty() {
            m.insert(k.into(), Value::Object(v));
        }
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// Decodes a protobuf request body into the JSON object it encodes.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body lacks the k8s envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (n, f) in fields(tm)? {
                    match n {
                        1 => api_version = string(&f),
                        2 => kind = string(&f),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    let (mut data, mut binary, mut string_data) = (Map::new(), Map::new(), Map::new());
    for (n, f) in fields(raw)? {
        match (kind.as_str(), n) {
            (_, 1) => {
                if let Field::Bytes(b) = f {
                    obj["metadata"] = object_meta(b)?;
                }
            }
            ("Namespace", 2) => {
                if let Field::Bytes(b) = f {
                    let fin: Vec<Value> = fields(b)?
                        .iter()
                        .filter(|(n, _)| *n == 1)
                        .map(|(_, f)| json!(string(f)))
                        .collect();
                    obj["spec"] = json!({"finalizers": fin});
                }
            }
            ("ConfigMap", 2) => drop(data.insert(map_entry(&f, false)?.0, map_entry(&f, false)?.1)),
            ("ConfigMap", 3) => drop(binary.insert(map_entry(&f, true)?.0, map_entry(&f, true)?.1)),
            ("ConfigMap", 4) | ("Secret", 5) => {
                obj["immutable"] = json!(matches!(f, Field::Varint(1)))
            }
            ("Secret", 2) => drop(data.insert(map_entry(&f, true)?.0, map_entry(&f, true)?.1)),
            ("Secret", 3) => obj["type"] = json!(string(&f)),
            ("Secret", 4) => {
                drop(string_data.insert(map_entry(&f, false)?.0, map_entry(&f, false)?.1))
            }
            ("ServiceAccount", 4) => {
                obj["automountServiceAccountToken"] = json!(matches!(f, Field::Varint(1)))
            }
            ("Namespace" | "ConfigMap" | "Secret" | "ServiceAccount", _) => {}
            (other, _) => {
                return Err(format!(
                    "kube-sim cannot decode protobuf {other} bodies; send JSON (kubectl create -f / apply)"
                ));
            }
        }
    }
    for (k, v) in [
        ("data", data),
        ("binaryData", binary),
        ("stringData", string_data),
    ] {
        if !v.is_empty() {
            obj[k] = Value::Object(v);
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(fields: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, b) in fields {
            out.push(((n << 3) | 2) as u8);
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn decodes_a_configmap_like_kubectl_sends_it() {
        let meta = msg(&[(1, b"cfg"), (11, &msg(&[(1, b"app"), (2, b"web")]))]);
        let cm = msg(&[(1, &meta), (2, &msg(&[(1, b"k"), (2, b"v")]))]);
        let type_meta = msg(&[(1, b"v1"), (2, b"ConfigMap")]);
        let mut body = MAGIC.to_vec();
        body.extend(msg(&[(1, &type_meta), (2, &cm)]));
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn refuses_kinds_it_does_not_know() {
        let mut body = MAGIC.to_vec();
        body.extend(msg(&[
            (1, &msg(&[(1, b"apps/v1"), (2, b"Deployment")])),
            (2, &msg(&[(2, b"x")])),
        ]));
        assert!(decode(&body).unwrap_err().contains("Deployment"));
        assert!(decode(b"{}").is_err());
    }
}
