//! Pair protocols: LFW's `pairs.txt` and CFP's `Protocol/` folders, both as an ordered list of
//! image pairs whose order defines the 10 contiguous folds.

use std::path::{Path, PathBuf};

use crate::error::{EvalError, Result};

/// One verification pair: two image paths (relative to an image root) and whether they match.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// First image.
    pub a: String,
    /// Second image.
    pub b: String,
    /// Same identity.
    pub same: bool,
}

/// Parses LFW's `pairs.txt`: a header line (`folds pairs_per_half`, or one number), then lines
/// `name i j` (same person) or `name1 i name2 j` (different). Paths come out as
/// `name/name_000i.jpg`, relative to the image root.
pub fn read_lfw_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    parse_lfw_pairs(&text, path)
}

/// Parses the text of a `pairs.txt` (see [`read_lfw_pairs`]); `origin` names it in errors.
pub fn parse_lfw_pairs(text: &str, origin: &Path) -> Result<Vec<Pair>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(EvalError::format(origin, "line 1", "empty pairs file"));
    };
    let header_ok = header.split_whitespace().all(|t| t.parse::<u32>().is_ok());
    if !header_ok {
        return Err(EvalError::format(
            origin,
            "line 1",
            format!("expected a header like `10 300`, found `{header}`"),
        ));
    }
    let img = |name: &str, idx: &str, line: usize| -> Result<String> {
        let n: u32 = idx.parse().map_err(|_| {
            EvalError::format(
                origin,
                format!("line {}", line + 1),
                format!("image number `{idx}` is not an integer"),
            )
        })?;
        Ok(format!("{name}/{name}_{n:04}.jpg"))
    };
    let mut pairs = Vec::new();
    for (i, line) in lines {
        let t: Vec<&str> = line.split_whitespace().collect();
        let pair = match t.as_slice() {
            [name, a, b] => Pair {
                a: img(name, a, i)?,
                b: img(name, b, i)?,
                same: true,
            },
            [n1, a, n2, b] => Pair {
                a: img(n1, a, i)?,
                b: img(n2, b, i)?,
                same: false,
            },
            _ => {
                return Err(EvalError::format(
                    origin,
                    format!("line {}", i + 1),
                    format!("expected `name i j` or `name1 i name2 j`, found `{line}`"),
                ));
            }
        };
        pairs.push(pair);
    }
    Ok(pairs)
}

/// Which CFP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfpProtocol {
    /// Frontal-frontal.
    FF,
    /// Frontal-profile (CFP-FP, the one papers quote).
    FP,
}

/// Reads CFP's protocol: for folds 01..10 in order, `same.txt` then `diff.txt` (`i,j` lines
/// indexing `Pair_list_F.txt` and `Pair_list_F.txt` or `Pair_list_P.txt`). Paths come out
/// relative to `Data/Images/` (the key format of CFP's `image_list.json`).
pub fn read_cfp_pairs(protocol_dir: &Path, which: CfpProtocol) -> Result<Vec<Pair>> {
    let f_list = read_cfp_list(&protocol_dir.join("Pair_list_F.txt"))?;
    let second = match which {
        CfpProtocol::FF => f_list.clone(),
        CfpProtocol::FP => read_cfp_list(&protocol_dir.join("Pair_list_P.txt"))?,
    };
    let sub = match which {
        CfpProtocol::FF => "FF",
        CfpProtocol::FP => "FP",
    };
    let mut pairs = Vec::new();
    for fold in 1..=10 {
        for (file, same) in [("same.txt", true), ("diff.txt", false)] {
            let path: PathBuf = protocol_dir
                .join("Split")
                .join(sub)
                .join(format!("{fold:02}"))
                .join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let bad = || {
                    EvalError::format(
                        &path,
                        format!("line {}", i + 1),
                        format!("expected `i,j` (1-based indices), found `{line}`"),
                    )
                };
                let (a, b) = line.trim().split_once(',').ok_or_else(bad)?;
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                let lookup = |list: &Vec<String>, k: usize| {
                    list.get(k.wrapping_sub(1)).cloned().ok_or_else(|| {
                        EvalError::format(
                            &path,
                            format!("line {}", i + 1),
                            format!("index {k} is outside the image list (1..={})", list.len()),
                        )
                    })
                };
                pairs.push(Pair {
                    a: lookup(&f_list, a)?,
                    b: lookup(&second, b)?,
                    same,
                });
            }
        }
    }
    Ok(pairs)
}

fn read_cfp_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let rel = line.split_whitespace().nth(1).ok_or_else(|| {
            EvalError::format(
                path,
                format!("line {}", i + 1),
                format!("expected `N ../Data/Images/...`, found `{line}`"),
            )
        })?;
        let rel = rel
            .trim_start_matches("../")
            .trim_start_matches("Data/Images/");
        out.push(rel.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_line_kinds() {
        let pairs = parse_lfw_pairs(
            "10\t300\nAbel_Pacheco\t1\t4\nA_B\t1\tC_D\t12\n",
            Path::new("p.txt"),
        )
        .unwrap();
        assert_eq!(
            pairs[0],
            Pair {
                a: "Abel_Pacheco/Abel_Pacheco_0001.jpg".into(),
                b: "Abel_Pacheco/Abel_Pacheco_0004.jpg".into(),
                same: true
            }
        );
        assert_eq!(
            pairs[1],
            Pair {
                a: "A_B/A_B_0001.jpg".into(),
                b: "C_D/C_D_0012.jpg".into(),
                same: false
            }
        );
        let err = parse_lfw_pairs("10 300\nx 1\n", Path::new("p.txt"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "p.txt: line 2: expected `name i j` or `name1 i name2 j`, found `x 1`"
        );
        let err = parse_lfw_pairs("Abel 1 2\n", Path::new("p.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1: expected a header"), "{err}");
    }
}
