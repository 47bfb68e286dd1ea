use mlx_tensor::{Array, Axes, Dtype};

#[test]
fn matmul_and_readback() {
    let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let y = (&x.matmul(&x.t().unwrap()).unwrap() * 0.5).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![2.5, 5.5, 5.5, 12.5]);
    let s: f32 = y.sum(Axes::All, false).unwrap().item().unwrap();
    assert_eq!(s, 26.0);
    let bad = x.matmul(&Array::zeros(&[3, 3], Dtype::F32).unwrap());
    let msg = bad.unwrap_err().to_string();
    assert!(msg.contains("matmul"), "{msg}");
    println!("{msg}");
}
