//! Real protocol files: LFW's 6,000 pairs and CFP's FF / FP protocols load with their images.

use ffem_eval::pairs::CfpProtocol;
use ffem_infer::evalset::PairSet;

#[test]
#[ignore = "needs the face data (FFEM_DATA or ../shared/data): cargo test -- --include-ignored"]
fn lfw_and_cfp_protocols_load_with_boxes() {
    let data = ffem_testdata::require_shared_data();
    let lfw = PairSet::lfw(&data.join("lfw")).unwrap();
    assert_eq!(lfw.pairs.len(), 6000);
    assert_eq!(lfw.pairs.iter().filter(|p| p.2).count(), 3000);
    // Ten folds of 300 same then 300 different, in file order.
    assert!(lfw.pairs[..300].iter().all(|p| p.2) && lfw.pairs[300..600].iter().all(|p| !p.2));
    assert_eq!(
        lfw.faces[lfw.pairs[0].0].name,
        "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    );
    assert_eq!(
        lfw.faces[lfw.pairs[0].1].name,
        "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    );
    assert!(
        lfw.faces
            .iter()
            .all(|f| f.face_box.is_some() && f.landmarks.is_some())
    );

    for (which, name) in [(CfpProtocol::FP, "cfp_fp"), (CfpProtocol::FF, "cfp_ff")] {
        let cfp = PairSet::cfp(&data.join("cfp"), which).unwrap();
        assert_eq!((cfp.name.as_str(), cfp.pairs.len()), (name, 7000));
        assert!(cfp.pairs[..350].iter().all(|p| p.2) && cfp.pairs[350..700].iter().all(|p| !p.2));
        assert!(cfp.faces.iter().all(|f| f.face_box.is_some()));
        if which == CfpProtocol::FP {
            // The second image of every FP pair is a profile.
            assert!(
                cfp.pairs
                    .iter()
                    .all(|p| cfp.faces[p.1].name.contains("/profile/"))
            );
            assert!(
                cfp.pairs
                    .iter()
                    .all(|p| cfp.faces[p.0].name.contains("/frontal/"))
            );
        }
    }
}
