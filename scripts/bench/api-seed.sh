#!/bin/bash
# The write-up's VPC built, or deleted again, with the real `aws ec2` CLI against any EC2
# endpoint: the same calls for vpclab serve and for moto's server mode, so bench.sh can time
# one against the other.
#
#   api-seed.sh up   ENDPOINT NAME IDS_FILE   the VPC (Name tag NAME), four subnets in two AZs,
#                                             the internet gateway, both route tables, an Elastic
#                                             IP, the NAT gateway, both security groups, a key
#                                             pair, the web and app instances, waited for
#   api-seed.sh down ENDPOINT NAME IDS_FILE   everything `up` made, deleted in AWS's order
#
# Credentials and region come from the environment (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE
# or AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION). Exits non-zero at the first failed call.
set -euo pipefail
mode=$1 ep=$2 name=$3 ids=$4
ec2() { aws --endpoint-url "$ep" --output text ec2 "$@"; }

if [[ $mode == down ]]; then
    # shellcheck disable=SC1090
    source "$ids"
    ec2 terminate-instances --instance-ids "$web" "$app" >/dev/null
    ec2 wait instance-terminated --instance-ids "$web" "$app"
    ec2 delete-nat-gateway --nat-gateway-id "$nat" >/dev/null
    ec2 release-address --allocation-id "$eip" >/dev/null
    # shellcheck disable=SC2154 # assoc_* come from the IDs file
    for a in "$assoc_pub2a" "$assoc_pub2c" "$assoc_pri2a" "$assoc_pri2c"; do
        ec2 disassociate-route-table --association-id "$a" >/dev/null
    done
    for s in "$pub2a" "$pri2a" "$pub2c" "$pri2c"; do ec2 delete-subnet --subnet-id "$s" >/dev/null; done
    for t in "$public" "$private"; do ec2 delete-route-table --route-table-id "$t" >/dev/null; done
    ec2 detach-internet-gateway --internet-gateway-id "$igw" --vpc-id "$vpc" >/dev/null
    ec2 delete-internet-gateway --internet-gateway-id "$igw" >/dev/null
    for g in "$app_sg" "$web_sg"; do ec2 delete-security-group --group-id "$g" >/dev/null; done
    ec2 delete-key-pair --key-name "$name-key" >/dev/null
    ec2 delete-vpc --vpc-id "$vpc" >/dev/null
    exit 0
fi

vpc=$(ec2 create-vpc --cidr-block 10.0.0.0/16 \
    --tag-specifications "ResourceType=vpc,Tags=[{Key=Name,Value=$name}]" --query Vpc.VpcId)
subnet() {
    ec2 create-subnet --vpc-id "$vpc" --cidr-block "$2" --availability-zone "$3" \
        --tag-specifications "ResourceType=subnet,Tags=[{Key=Name,Value=$1}]" --query Subnet.SubnetId
}
pub2a=$(subnet public-2a 10.0.0.0/24 ap-northeast-2a)
pri2a=$(subnet private-2a 10.0.1.0/24 ap-northeast-2a)
pub2c=$(subnet public-2c 10.0.2.0/24 ap-northeast-2c)
pri2c=$(subnet private-2c 10.0.3.0/24 ap-northeast-2c)
igw=$(ec2 create-internet-gateway --query InternetGateway.InternetGatewayId)
ec2 attach-internet-gateway --internet-gateway-id "$igw" --vpc-id "$vpc"
public=$(ec2 create-route-table --vpc-id "$vpc" --query RouteTable.RouteTableId)
ec2 create-route --route-table-id "$public" --destination-cidr-block 0.0.0.0/0 --gateway-id "$igw" >/dev/null
# associate TABLE SUBNET: the association ID (deleted subnets keep theirs in some mocks, so
# `down` removes them one by one, as a careful script does on AWS).
associate() { ec2 associate-route-table --route-table-id "$1" --subnet-id "$2" --query AssociationId; }
assoc_pub2a=$(associate "$public" "$pub2a")
assoc_pub2c=$(associate "$public" "$pub2c")
eip=$(ec2 allocate-address --domain vpc --query AllocationId)
nat=$(ec2 create-nat-gateway --subnet-id "$pub2a" --allocation-id "$eip" --query NatGateway.NatGatewayId)
ec2 wait nat-gateway-available --nat-gateway-ids "$nat"
private=$(ec2 create-route-table --vpc-id "$vpc" --query RouteTable.RouteTableId)
ec2 create-route --route-table-id "$private" --destination-cidr-block 0.0.0.0/0 --nat-gateway-id "$nat" >/dev/null
assoc_pri2a=$(associate "$private" "$pri2a")
assoc_pri2c=$(associate "$private" "$pri2c")
web_sg=$(ec2 create-security-group --group-name MyWebServer-SecurityGroup --description "SSH from my IP" \
    --vpc-id "$vpc" --query GroupId)
ec2 authorize-security-group-ingress --group-id "$web_sg" --protocol tcp --port 22 --cidr 203.0.113.10/32 >/dev/null
ec2 authorize-security-group-ingress --group-id "$web_sg" --protocol tcp --port 80 --cidr 0.0.0.0/0 >/dev/null
app_sg=$(ec2 create-security-group --group-name MyApp-SecurityGroup --description "SSH from the web server" \
    --vpc-id "$vpc" --query GroupId)
ec2 authorize-security-group-ingress --group-id "$app_sg" --protocol tcp --port 22 --source-group "$web_sg" >/dev/null
ec2 create-key-pair --key-name "$name-key" --query KeyMaterial >/dev/null
web=$(ec2 run-instances --image-id ami-0c9c942bd7bf113a2 --instance-type t2.micro --key-name "$name-key" \
    --security-group-ids "$web_sg" --subnet-id "$pub2c" --private-ip-address 10.0.2.238 \
    --associate-public-ip-address --query 'Instances[0].InstanceId')
app=$(ec2 run-instances --image-id ami-0c9c942bd7bf113a2 --instance-type t2.micro --key-name "$name-key" \
    --security-group-ids "$app_sg" --subnet-id "$pri2a" --query 'Instances[0].InstanceId')
ec2 wait instance-running --instance-ids "$web" "$app"
for v in vpc pub2a pri2a pub2c pri2c igw public private eip nat web_sg app_sg web app \
    assoc_pub2a assoc_pub2c assoc_pri2a assoc_pri2c; do
    printf '%s=%q\n' "$v" "${!v}"
done >"$ids"
