//! insightface `.bin` verification sets (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`): one pickle of
//! `(bins, issame_list)`: 2N encoded images, then N booleans (pair i = images 2i and 2i+1).
//!
//! A small pickle interpreter (protocols 0-5, the opcodes such files use) reads them without
//! Python. Images may be `bytes`, Python 2 `str`, or NumPy uint8 arrays (either `_reconstruct` +
//! state, or protocol 5's `_frombuffer`), and protocol-2 `bytes` (`_codecs.encode(s, 'latin1')`).
//! Written here because the pickle crates (serde-pickle) do not rebuild NumPy arrays, which is what
//! these files hold.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use crate::error::{EvalError, Result};

/// A verification set: encoded images and, per pair, whether it is the same person.
#[derive(Debug, Clone, PartialEq)]
pub struct BinSet {
    /// 2N encoded images.
    pub images: Vec<Vec<u8>>,
    /// N labels.
    pub issame: Vec<bool>,
}

/// Reads an insightface `.bin` verification set.
pub fn read_bin(path: &Path) -> Result<BinSet> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    parse_bin(&bytes).map_err(|(offset, m)| EvalError::format(path, format!("byte {offset}"), m))
}

/// Parses the bytes of a `.bin` set; errors carry the byte offset.
pub fn parse_bin(bytes: &[u8]) -> std::result::Result<BinSet, (usize, String)> {
    let top = Unpickler {
        data: bytes,
        pos: 0,
        stack: vec![],
        marks: vec![],
        memo: Default::default(),
    }
    .run()?;
    let end = bytes.len();
    let items = match &top {
        Py::Tuple(t) if t.len() == 2 => t.clone(),
        Py::List(l) if l.borrow().len() == 2 => Rc::new(l.borrow().clone()),
        other => {
            return Err((
                end,
                format!(
                    "expected a pickled (bins, issame_list) pair, found {}",
                    other.kind()
                ),
            ));
        }
    };
    let images = seq(&items[0]).ok_or((end, "bins is not a list".to_string()))?;
    let issame = seq(&items[1]).ok_or((end, "issame_list is not a list".to_string()))?;
    let images: Vec<Vec<u8>> = images
        .iter()
        .enumerate()
        .map(|(i, v)| {
            image_bytes(v).ok_or((
                end,
                format!("image {i} is a {}, not bytes or a uint8 array", v.kind()),
            ))
        })
        .collect::<std::result::Result<_, _>>()?;
    let issame: Vec<bool> = issame
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Py::Bool(b) => Ok(*b),
            Py::Int(n) => Ok(*n != 0),
            other => Err((
                end,
                format!("issame[{i}] is a {}, not a bool", other.kind()),
            )),
        })
        .collect::<std::result::Result<_, _>>()?;
    if images.len() != 2 * issame.len() {
        return Err((
            end,
            format!(
                "{} images for {} pairs: expected exactly twice as many images",
                images.len(),
                issame.len()
            ),
        ));
    }
    Ok(BinSet { images, issame })
}

fn seq(v: &Py) -> Option<Vec<Py>> {
    match v {
        Py::List(l) => Some(l.borrow().clone()),
        Py::Tuple(t) => Some(t.to_vec()),
        Py::Object { .. } => array_bool_list(v),
        _ => None,
    }
}

/// A NumPy bool array used as issame_list.
fn array_bool_list(v: &Py) -> Option<Vec<Py>> {
    let raw = ndarray_bytes(v)?;
    Some(raw.iter().map(|&b| Py::Bool(b != 0)).collect())
}

fn image_bytes(v: &Py) -> Option<Vec<u8>> {
    match v {
        Py::Bytes(b) => Some(b.to_vec()),
        Py::Object { .. } => ndarray_bytes(v),
        _ => None,
    }
}

fn ndarray_bytes(v: &Py) -> Option<Vec<u8>> {
    let Py::Object {
        callable,
        args,
        state,
    } = v
    else {
        return None;
    };
    let Py::Global(module, name) = &**callable else {
        return None;
    };
    if name == "_reconstruct" && module.ends_with("multiarray") {
        // State: (version, shape, dtype, is_fortran, rawdata).
        let Some(Py::Tuple(s)) = state.as_deref() else {
            return None;
        };
        return match s.get(4)? {
            Py::Bytes(b) => Some(b.to_vec()),
            Py::Str(s) => Some(s.chars().map(|c| c as u32 as u8).collect()),
            Py::List(items) => items
                .borrow()
                .iter()
                .map(|i| {
                    if let Py::Int(n) = i {
                        Some(*n as u8)
                    } else {
                        None
                    }
                })
                .collect(),
            _ => None,
        };
    }
    if name == "_frombuffer" {
        let Py::Tuple(a) = &**args else { return None };
        if let Some(Py::Bytes(b)) = a.first() {
            return Some(b.to_vec());
        }
    }
    None
}

/// A Python value as far as these files need.
#[derive(Debug, Clone)]
enum Py {
    None,
    Bool(bool),
    Int(i64),
    Float(#[allow(dead_code)] f64),
    Bytes(Rc<Vec<u8>>),
    Str(Rc<String>),
    List(Rc<RefCell<Vec<Py>>>),
    Tuple(Rc<Vec<Py>>),
    Dict(Rc<RefCell<Vec<(Py, Py)>>>),
    Global(String, String),
    Object {
        callable: Rc<Py>,
        args: Rc<Py>,
        state: Option<Rc<Py>>,
    },
}

impl Py {
    fn kind(&self) -> &'static str {
        match self {
            Py::None => "None",
            Py::Bool(_) => "bool",
            Py::Int(_) => "int",
            Py::Float(_) => "float",
            Py::Bytes(_) => "bytes",
            Py::Str(_) => "str",
            Py::List(_) => "list",
            Py::Tuple(_) => "tuple",
            Py::Dict(_) => "dict",
            Py::Global(..) => "class",
            Py::Object { .. } => "object",
        }
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Py>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, Py>,
}

type Step<T> = std::result::Result<T, (usize, String)>;

impl<'a> Unpickler<'a> {
    fn err<T>(&self, m: impl Into<String>) -> Step<T> {
        Err((self.pos, m.into()))
    }
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        match self.pos.checked_add(n).filter(|&e| e <= self.data.len()) {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.err("truncated pickle: data ends inside a value"),
        }
    }
    fn uint(&mut self, n: usize) -> Step<u64> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }
    fn line(&mut self) -> Step<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("truncated pickle: unterminated line");
        };
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end])
            .map_err(|_| (self.pos, "non-text line in pickle".to_string()))
    }
    fn pop(&mut self) -> Step<Py> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.err("malformed pickle: stack underflow"),
        }
    }
    fn pop_mark(&mut self) -> Step<Vec<Py>> {
        let Some(m) = self.marks.pop() else {
            return self.err("malformed pickle: no MARK");
        };
        if m > self.stack.len() {
            return self.err("malformed pickle: bad MARK");
        }
        Ok(self.stack.split_off(m))
    }
    fn top(&mut self) -> Step<&mut Py> {
        let pos = self.pos;
        self.stack
            .last_mut()
            .ok_or((pos, "malformed pickle: empty stack".to_string()))
    }

    fn run(mut self) -> Step<Py> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    let v = self.take(1)?[0];
                    if v > 5 {
                        return self.err(format!("pickle protocol {v} is not supported (2-5 are)"));
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b']' => self.stack.push(Py::List(Rc::new(RefCell::new(vec![])))),
                b')' => self.stack.push(Py::Tuple(Rc::new(vec![]))),
                b'}' => self.stack.push(Py::Dict(Rc::new(RefCell::new(vec![])))),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Py::List(Rc::new(RefCell::new(items))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items
                        .chunks_exact(2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    self.stack.push(Py::Dict(Rc::new(RefCell::new(pairs))));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Py::List(l) => l.borrow_mut().push(v),
                        _ => return self.err("APPEND to a non-list"),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Py::List(l) => l.borrow_mut().extend(items),
                        _ => return self.err("APPENDS to a non-list"),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Py::Dict(d) => d.borrow_mut().push((k, v)),
                        _ => return self.err("SETITEM on a non-dict"),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Py::Dict(d) => d
                            .borrow_mut()
                            .extend(items.chunks_exact(2).map(|c| (c[0].clone(), c[1].clone()))),
                        _ => return self.err("SETITEMS on a non-dict"),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Py::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return self.err("malformed pickle: short tuple");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Py::Tuple(Rc::new(items)));
                }
                b'N' => self.stack.push(Py::None),
                0x88 => self.stack.push(Py::Bool(true)),
                0x89 => self.stack.push(Py::Bool(false)),
                b'J' => {
                    let v = self.uint(4)? as u32 as i32 as i64;
                    self.stack.push(Py::Int(v));
                }
                b'K' => {
                    let v = self.uint(1)? as i64;
                    self.stack.push(Py::Int(v));
                }
                b'M' => {
                    let v = self.uint(2)? as i64;
                    self.stack.push(Py::Int(v));
                }
                0x8a => {
                    let n = self.uint(1)? as usize;
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate().take(8) {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Py::Int(v));
                }
                b'I' | b'L' => {
                    let l = self.line()?.trim_end_matches('L');
                    let v = match l {
                        "01" => Py::Bool(true),
                        "00" => Py::Bool(false),
                        s => Py::Int(
                            s.parse()
                                .map_err(|_| (self.pos, format!("bad INT `{s}`")))?,
                        ),
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.stack.push(Py::Float(f64::from_be_bytes(
                        b.try_into().expect("8 bytes"),
                    )));
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'U' | b'C' => self.uint(1)?,
                        b'T' | b'B' => self.uint(4)?,
                        _ => self.uint(8)?,
                    } as usize;
                    let b = self.take(n)?;
                    self.stack.push(Py::Bytes(Rc::new(b.to_vec())));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        0x8c => self.uint(1)?,
                        b'X' => self.uint(4)?,
                        _ => self.uint(8)?,
                    } as usize;
                    let b = self.take(n)?;
                    let s = String::from_utf8_lossy(b).into_owned();
                    self.stack.push(Py::Str(Rc::new(s)));
                }
                b'q' | b'r' | 0x94 | b'p' => {
                    let key = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        b'p' => self
                            .line()?
                            .parse()
                            .map_err(|_| (self.pos, "bad PUT".to_string()))?,
                        _ => self.memo.len() as u64,
                    };
                    let v = self.top()?.clone();
                    self.memo.insert(key, v);
                }
                b'h' | b'j' | b'g' => {
                    let key = match op {
                        b'h' => self.uint(1)?,
                        b'j' => self.uint(4)?,
                        _ => self
                            .line()?
                            .parse()
                            .map_err(|_| (self.pos, "bad GET".to_string()))?,
                    };
                    let Some(v) = self.memo.get(&key).cloned() else {
                        return self.err(format!("memo key {key} was never stored"));
                    };
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.stack.push(Py::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Py::Str(m), Py::Str(n)) => {
                            self.stack.push(Py::Global(m.to_string(), n.to_string()))
                        }
                        _ => return self.err("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args));
                }
                b'b' => {
                    let state = self.pop()?;
                    // BUILD on plain values carries nothing these files need.
                    if let Py::Object { state: s, .. } = self.top()? {
                        *s = Some(Rc::new(state));
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                other => {
                    return Err((
                        self.pos - 1,
                        format!(
                            "unsupported pickle opcode 0x{other:02x}: is this an insightface .bin file?"
                        ),
                    ));
                }
            }
        }
    }
}

fn reduce(callable: Py, args: Py) -> Py {
    if let Py::Global(module, name) = &callable {
        let a = if let Py::Tuple(t) = &args {
            t.clone()
        } else {
            Rc::new(vec![])
        };
        match (module.as_str(), name.as_str()) {
            // Protocol 2 writes Python 3 bytes as _codecs.encode(latin-1 text, 'latin1').
            ("_codecs", "encode") => {
                if let Some(Py::Str(s)) = a.first() {
                    return Py::Bytes(Rc::new(s.chars().map(|c| c as u32 as u8).collect()));
                }
            }
            ("__builtin__" | "builtins", "bytes" | "bytearray") => {
                return match a.first() {
                    Some(Py::Bytes(b)) => Py::Bytes(b.clone()),
                    _ => Py::Bytes(Rc::new(vec![])),
                };
            }
            _ => {}
        }
    }
    Py::Object {
        callable: Rc::new(callable),
        args: Rc::new(args),
        state: None,
    }
}

/// Writes a `.bin` set as protocol-4 pickle of `(list of bytes, list of bool)`, as insightface does.
pub fn write_bin(path: &Path, set: &BinSet) -> Result<()> {
    let mut out = vec![0x80, 4];
    out.extend_from_slice(b"](");
    for img in &set.images {
        out.push(b'B');
        out.extend_from_slice(&(img.len() as u32).to_le_bytes());
        out.extend_from_slice(img);
    }
    out.extend_from_slice(b"e](");
    for &s in &set.issame {
        out.push(if s { 0x88 } else { 0x89 });
    }
    out.extend_from_slice(b"e\x86.");
    std::fs::write(path, out).map_err(|e| EvalError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protocol_4_bytes_as_written_by_python() {
        // pickle.dumps(([b'ab', b'cd'], [True]), protocol=4), bytes taken from CPython 3.11.
        let p = b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02ab\x94C\x02cd\x94e]\x94\x88a\x86\x94.";
        let set = parse_bin(p).unwrap();
        assert_eq!(set.images, vec![b"ab".to_vec(), b"cd".to_vec()]);
        assert_eq!(set.issame, vec![true]);
    }

    #[test]
    fn reads_protocol_2_python3_bytes_and_python2_str() {
        // pickle.dumps(([b'\xff\xd8', b'z'], [False]), protocol=2) from CPython 3.11:
        // bytes become _codecs.encode(text, 'latin1').
        let p = b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x04\x00\x00\x00\xc3\xbf\xc3\x98q\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x01\x00\x00\x00zq\x06h\x03\x86q\x07Rq\x08e]q\t\x89a\x86q\n.";
        let set = parse_bin(p).unwrap();
        assert_eq!(set.images, vec![vec![0xff, 0xd8], b"z".to_vec()]);
        assert_eq!(set.issame, vec![false]);
        // Python 2 str: SHORT_BINSTRING.
        let p2 = b"\x80\x02]q\x00(U\x02abq\x01U\x02cdq\x02e]q\x03\x88a\x86q\x04.";
        assert_eq!(parse_bin(p2).unwrap().images[1], b"cd".to_vec());
    }

    #[test]
    fn reads_numpy_uint8_arrays() {
        // pickle.dumps(([np.frombuffer(b'xy', np.uint8), np.frombuffer(b'q', np.uint8)], [True]), protocol=2)
        // from NumPy 2.4 (the reconstruct/state form); the dtype and ndarray globals are memoised.
        let p = b"\x80\x02]q\x00(cnumpy._core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85q\x03c_codecs\nencode\nq\x04X\x01\x00\x00\x00bq\x05X\x06\x00\x00\x00latin1q\x06\x86q\x07Rq\x08\x87q\tRq\n(K\x01K\x02\x85q\x0bcnumpy\ndtype\nq\x0cX\x02\x00\x00\x00u1q\r\x89\x88\x87q\x0eRq\x0f(K\x03X\x01\x00\x00\x00|q\x10NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x11b\x89h\x04X\x02\x00\x00\x00xyq\x12h\x06\x86q\x13Rq\x14tq\x15bh\x01h\x02K\x00\x85q\x16h\x08\x87q\x17Rq\x18(K\x01K\x01\x85q\x19h\x0f\x89h\x04X\x01\x00\x00\x00qq\x1ah\x06\x86q\x1bRq\x1ctq\x1dbe]q\x1e\x88a\x86q\x1f.";
        let set = parse_bin(p).unwrap();
        assert_eq!(set.images, vec![b"xy".to_vec(), b"q".to_vec()]);
        // Protocol 5 uses numpy._core.numeric._frombuffer(buffer, dtype, shape, order).
        let p5 = b"\x80\x05\x95x\x00\x00\x00\x00\x00\x00\x00]\x94\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(C\x02xy\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02u1\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x02\x85\x94\x8c\x01C\x94t\x94R\x94a]\x94\x88a\x86\x94.";
        // That pickles one image for one pair: check the image, then the pair-count error.
        assert!(
            parse_bin(p5)
                .unwrap_err()
                .1
                .contains("1 images for 1 pairs")
        );
    }

    #[test]
    fn writer_round_trips_and_errors_carry_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let set = BinSet {
            images: vec![vec![1, 2, 3], vec![], vec![9; 300], vec![4]],
            issame: vec![true, false],
        };
        write_bin(&path, &set).unwrap();
        assert_eq!(read_bin(&path).unwrap(), set);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..20]).unwrap();
        let err = read_bin(&path).unwrap_err().to_string();
        assert!(
            err.contains("t.bin: byte") && err.contains("truncated pickle"),
            "{err}"
        );
        let odd = BinSet {
            images: vec![vec![1]],
            issame: vec![true],
        };
        write_bin(&path, &odd).unwrap();
        assert!(
            read_bin(&path)
                .unwrap_err()
                .to_string()
                .contains("1 images for 1 pairs")
        );
    }
}
